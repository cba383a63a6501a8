"""The whole pipeline as a user runs it: `dvc repro` in a fresh copy of the project, on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import PROJECT_ROOT
from tests.synthetic import make_busi_tree, parent_of, write_manifest, zip_tree

MODELS = ["simple_cnn", "mobilenet", "resnet101"]
GENERATED = [
    "dvc.lock", "data/split.csv", "data/audit", "metrics", "plots",
    "repeats/dvc.lock", "repeats/metrics", "repeats/summary.json", "repeats/summary.md",
]  # fmt: skip
REPORT_FIGURES = ["confusion", "curves", "roc", "reliability"]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _project_copy(dest: Path) -> None:
    """The project's files as a clone would have them (tracked and not ignored), minus generated results."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if any(rel == g or rel.startswith(f"{g}/") for g in GENERATED) or not (PROJECT_ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, dest / rel)


def _set_params(path: Path, changes: dict[str, object]) -> None:
    yaml = YAML()  # round trip, as `dvc exp run -S` does: comments and layout stay
    data = yaml.load(path)
    for dotted, value in changes.items():
        node, last = parent_of(data, dotted)
        node[last] = value
    yaml.dump(data, path)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git + DVC copy of the project on 30 synthetic images of 32x32, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    _project_copy(root)
    data = tmp_path_factory.mktemp("busi")
    entries = make_busi_tree(data / "tree")
    write_manifest(root / "data" / "busi_manifest.tsv", entries)
    archive = zip_tree(data / "tree", data / "busi.zip")
    _set_params(root / "params.yaml", {
        "preprocess.image_size": 32, "preprocess.resize_short_side": 36,
        "train.max_epochs": 2, "train.batch_size": 4, "train.resnet101.weights": "none",
    })  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is this venv's
        "BUSI_SOURCE": str(archive),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }  # fmt: skip
    dvc = str(Path(sys.executable).parent / "dvc")
    _run(["git", "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "project"], root, env)
    repro = _run([dvc, "repro"], root, env)
    return {"root": root, "env": env, "dvc": dvc, "repro": repro}


def test_repro_runs_every_stage_and_writes_every_output(repo):
    root = repo["root"]
    stages = ["download", "preprocess", "audit", "split", "leakage", "report"]
    for stage in [*stages, *(f"train@{m}" for m in MODELS), *(f"evaluate@{m}" for m in MODELS)]:
        assert f"Running stage '{stage}'" in repo["repro"].stdout
    assert "repeats/dvc.yaml" not in repo["repro"].stdout  # the plain repro is the single-seed study
    with open(root / "data" / "split.csv", newline="") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (21, 4, 5)
    for model in MODELS:
        metrics = json.loads((root / "metrics" / f"{model}.json").read_text())
        assert metrics["n_test"] == 5
        assert sum(sum(row.values()) for row in metrics["confusion"].values()) == 5
        assert 0.0 <= metrics["accuracy"] <= 1.0
        with open(root / "plots" / "history" / f"{model}.csv", newline="") as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
        with open(root / "plots" / "predictions" / f"{model}.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == 5
        assert (root / "data" / "checkpoints" / f"{model}.pt").is_file()
        assert metrics["accuracy_ci95"]["low"] <= metrics["accuracy"] <= metrics["accuracy_ci95"]["high"]
    data = json.loads((root / "metrics" / "data.json").read_text())
    assert data["images"]["total"] == 30
    report = (root / "plots" / "report" / "report.md").read_text()
    assert all(model in report for model in MODELS)
    for figure in REPORT_FIGURES:
        assert (root / "plots" / "report" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status = _run([repo["dvc"], "status", "dvc.yaml"], root, repo["env"]).stdout
    assert "up to date" in status


def test_plots_show_renders_history_and_confusion_for_every_model(repo):
    root = repo["root"]
    shown = json.loads(_run([repo["dvc"], "plots", "show", "--json"], root, repo["env"]).stdout)["data"]
    for model in MODELS:
        for plot in (f"plots/history/{model}.csv", f"plots/predictions/{model}.csv"):
            assert plot in shown and shown[plot][0]["type"] == "vega", plot
            assert "error" not in json.dumps(shown[plot]).lower()
    for image in ["plots/audit/label_conflicts.png", *(f"plots/report/{f}.png" for f in REPORT_FIGURES)]:
        assert shown[image][0]["type"] == "image", image
    _run([repo["dvc"], "plots", "show", "-o", "rendered"], root, repo["env"])
    html = (root / "rendered" / "index.html").read_text()
    assert html.count("vegaEmbed") >= 2 * len(MODELS)
    assert html.count("<img") >= 1 + len(REPORT_FIGURES)


def test_changing_one_models_setting_reruns_only_that_model_and_metrics_diff_shows_it(repo):
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "results"], root, env)
    _set_params(root / "params.yaml", {"train.simple_cnn.lr": 0.01})
    out = _run([dvc, "repro"], root, env).stdout
    assert "Running stage 'train@simple_cnn'" in out and "Running stage 'evaluate@simple_cnn'" in out
    assert "Running stage 'train@mobilenet'" not in out and "Running stage 'train@resnet101'" not in out
    diff = json.loads(_run([dvc, "metrics", "diff", "--all", "--json"], root, env).stdout)
    assert set(diff) == {"metrics/data.json", *(f"metrics/{m}.json" for m in MODELS)}
    assert diff["metrics/mobilenet.json"]["accuracy"]["old"] == diff["metrics/mobilenet.json"]["accuracy"]["new"]
    params = _run([dvc, "params", "diff"], root, env).stdout
    assert "train.simple_cnn.lr" in params and "0.01" in params


def test_repeated_study_trains_only_what_is_missing_and_summarizes(repo):
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    _set_params(root / "params.yaml", {"repeat.models": ["simple_cnn", "mobilenet"], "repeat.seeds": [1]})
    first = _run([dvc, "repro", "repeats/dvc.yaml"], root, env).stdout
    stages = ["main_run@simple_cnn", "split@1", "train@simple_cnn-1", "train@mobilenet-1", "evaluate@simple_cnn-1",
              "summarize"]  # fmt: skip
    for stage in stages:
        assert f"Running stage 'repeats/dvc.yaml:{stage}'" in first, stage
    assert "Running stage 'train@" not in first  # the main runs are up to date and are not retrained
    _set_params(root / "params.yaml", {"repeat.seeds": [1, 2]})
    second = _run([dvc, "repro", "repeats/dvc.yaml"], root, env).stdout
    assert "Running stage 'repeats/dvc.yaml:train@simple_cnn-2'" in second
    for done in ["train@simple_cnn-1", "train@mobilenet-1"]:
        assert f"Running stage 'repeats/dvc.yaml:{done}'" not in second
        assert f"Stage 'repeats/dvc.yaml:{done}' didn't change, skipping" in second
    summary = json.loads((root / "repeats" / "summary.json").read_text())
    assert summary["models"]["simple_cnn"]["accuracy"]["n"] == 3  # the main run and seeds 1 and 2
    assert "simple_cnn_vs_mobilenet" in summary["paired"]
    assert "simple_cnn" in (root / "repeats" / "summary.md").read_text()
