"""`dvc plots show` writes a page that renders without network access.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from cdn.jsdelivr.net, so offline every Vega
plot is silently missing. .dvc/config points `plots.html_template` at .dvc/plots/offline_page.html,
which carries the three libraries inline (built by `make plots-template`). This runs the real
`dvc plots show` on a tiny copy of the project's plots (its .dvc/ and the `plots:` section of its
dvc.yaml, with a few rows of data) and fails if the page would load anything from the network again.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from ruamel.yaml import YAML

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS = ["simple_cnn", "mobilenet"]
HISTORY_CSV = (
    "epoch,train_loss,val_loss,train_accuracy,val_accuracy,lr,seconds\n"
    "0,1.1,0.97,0.55,0.56,0.001,1.5\n"
    "1,0.93,0.93,0.60,0.66,0.001,1.4\n"
)
PREDICTIONS_CSV = (  # no "normal" prediction, as in the real runs
    "file,actual,predicted,p_benign,p_malignant,p_normal\n"
    "benign/a.png,benign,benign,0.6,0.3,0.1\n"
    "malignant/b.png,malignant,malignant,0.2,0.7,0.1\n"
    "normal/c.png,normal,benign,0.5,0.2,0.3\n"
)
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360606060000000050001a5f645400000000049454e44ae426082"
)
# Attributes through which a page fetches something while it loads (href: on a click, or <link>).
LOADING_ATTRIBUTES = {"src", "href", "srcset", "data", "poster", "action", "formaction", "background", "xlink:href"}
REMOTE = re.compile(r"^\s*([a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //host, ...
# Code that fetches a literal URL (dynamic import, fetch, worker import, CSS import/url). The inlined
# libraries mention URLs in strings (SVG namespaces, the Vega editor's address), so look only here.
REMOTE_IN_CODE = re.compile(
    r"""(\bimport\s*\(|\bfetch\s*\(|\bimportScripts\s*\(|@import\s|\burl\s*\()\s*["'`]?(https?:)?//""",
    re.IGNORECASE,
)


class _Page(HTMLParser):
    """The page's tags with their attributes, and the text of its <script> and <style> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.code: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k.lower(): v or "" for k, v in attrs}))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in:
            self.code.append(data)


def _pinned_packages() -> list[tuple[str, str, str]]:
    """(npm name, version, file) as the build script pins them: the page must hold those versions."""
    script = PROJECT_ROOT / ".dvc" / "plots" / "build_offline_template.py"
    return runpy.run_path(str(script))["PACKAGES"]  # not run as __main__: nothing is built, no .pyc written


def _tiny_project(root: Path) -> list[str]:
    """The project's .dvc/ and dvc.yaml `plots:` section, with small data; returns the plot ids given data."""
    shutil.copytree(PROJECT_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    (root / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")  # no git needed for `plots show`
    yaml = YAML(typ="safe")
    plots = yaml.load(PROJECT_ROOT / "dvc.yaml")["plots"]
    yaml.dump({"plots": plots}, root / "dvc.yaml")
    plot_ids = []
    for entry in plots:
        target = entry if isinstance(entry, str) else next(iter(entry))
        if target in ("plots/history", "plots/predictions"):
            for model in MODELS:
                path = root / target / f"{model}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(HISTORY_CSV if target.endswith("history") else PREDICTIONS_CSV)
                plot_ids.append(f"{target}/{model}.csv")
        elif target.endswith(".png"):
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            (root / target).write_bytes(PNG_1X1)
            plot_ids.append(target)
    return plot_ids


def test_plots_show_page_loads_nothing_from_the_network(tmp_path):
    plot_ids = _tiny_project(tmp_path)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    result = subprocess.run(
        [*dvc, "plots", "show", "-o", "page"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    html = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    code = "\n".join(page.code)

    remote = [
        (tag, name, value)
        for tag, attrs in page.tags
        for name, value in attrs.items()
        if name in LOADING_ATTRIBUTES and REMOTE.match(value)
    ]
    assert not remote, f"the page loads from the network: {remote}"
    assert not [attrs for tag, attrs in page.tags if tag == "script" and "src" in attrs], "every script is inline"
    fetched = REMOTE_IN_CODE.search(code)
    assert fetched is None, f"a script fetches from the network: {fetched.group(0)}..."
    assert "cdn.jsdelivr.net" not in html  # DVC's default page: <script src="https://cdn.jsdelivr.net/npm/vega@...">

    # The three libraries are there, at the versions the build script pins (a stale page fails here).
    for global_name in ("vega", "vegaLite", "vegaEmbed"):
        assert re.search(rf"\.{global_name}\s*=", code), f"{global_name} is not defined by an inline script"
    for name, version, _ in _pinned_packages():
        inlined = f"/* {name}@{version} " in code and f'"{version}"' in code  # banner, library's own version
        assert inlined, f"{name}@{version} is not inlined: run `make plots-template`"

    # Every plot is on the page, each Vega one with its call to vegaEmbed, and DVC filled every anchor.
    div_ids = {attrs.get("id", "").strip() for tag, attrs in page.tags if tag == "div"}
    for plot_id in plot_ids:
        div_id = re.sub(r"[/.]", "_", plot_id)  # as dvc_render's Renderer.remove_special_chars has it
        assert div_id in div_ids, f"{plot_id} is missing from the page"
        if plot_id.endswith(".csv"):
            assert f"vegaEmbed('#{div_id}'" in code, f"{plot_id} is not rendered by Vega"
    assert "<DVC_METRIC_" not in html
