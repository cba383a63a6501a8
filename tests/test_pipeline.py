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

from bcmodels.audit.overlay_check import draw_samples
from bcmodels.config.load import load_params
from bcmodels.formats.manifest import write_manifest
from bcmodels.formats.overlays import LabelRow, write_labels
from tests.conftest import PROJECT_ROOT, project_params
from tests.synthetic import make_backbone_wheel, make_busi_tree, parent_of, zip_tree

pytestmark = pytest.mark.slow  # minutes: every test stands on a whole `dvc repro`

MODELS = list(project_params().train.models)  # the main run trains every one of them
# What a run writes: left out of the copy, so that the test starts where a user without results would.
GENERATED = ["dvc.lock", "data/split.csv", "data/audit", "metrics", "plots", "repeats", "crossval"]
KEEP = ["repeats/dvc.yaml", "crossval/dvc.yaml", "crossval/search/README.md", "plots/.gitignore"]
REPORT_FIGURES = ["confusion", "curves", "roc", "reliability"]
CROSSVAL_MODELS = ["simple_cnn", "mobilenet_v2"]  # mobilenet_v2 starts from the backbone stage's weights
MARK_FREE_MODELS = ["simple_cnn"]  # also trained and tested on the images with their marks removed
# Where the repeated and cross-validation tests leave the studies' settings (their last runs).
REPEATS_SETTINGS = {"repeat.models": ["simple_cnn", "mobilenet"], "repeat.seeds": [1, 2]}
CROSSVAL_SETTINGS = {"crossval.models": ["simple_cnn"], "crossval.seeds": [0, 1]}


def _run(args: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if ok:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def project_copy(dest: Path) -> None:
    """The project's files as a clone would have them (tracked and not ignored), minus generated results."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        generated = any(rel == g or rel.startswith(f"{g}/") for g in GENERATED) and rel not in KEEP
        if generated or not (PROJECT_ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, dest / rel)


def set_params(path: Path, changes: dict[str, object]) -> None:
    yaml = YAML()  # round trip, as `dvc exp run -S` does: comments and layout stay
    data = yaml.load(path)
    for dotted, value in changes.items():
        node, last = parent_of(data, dotted)
        node[last] = value
    yaml.dump(data, path)


def tiny_project(root: Path, data: Path) -> dict[str, str]:
    """A copy of the project set up for 30 synthetic images of 32 x 32 and a stand-in backbone; its environment."""
    project_copy(root)
    entries = make_busi_tree(data / "tree")
    write_manifest(root / "data" / "busi_manifest.tsv", entries)
    archive = zip_tree(data / "tree", data / "busi.zip")
    yaml = YAML(typ="safe")
    backbone = yaml.load((root / "params.yaml").read_text())["backbone"]
    wheel = root / "data" / "downloads" / backbone["url"].rsplit("/", 1)[-1]
    set_params(
        root / "params.yaml",
        {
            "backbone.sha256": make_backbone_wheel(wheel, backbone["member"]),
            "preprocess.image_size": 32,
            "preprocess.resize_short_side": 36,
            "audit.features.image_size": 32,
            "audit.features.threshold": 1.0,  # the stand-in backbone's random features would link everything
            "audit.linked_by_eye": [],  # the study's pairs name BUSI files the synthetic tree does not have
            "split.folds": 3,
            "train.max_epochs": 2,
            "train.batch_size": 4,
            "train.resnet101.weights": "none",
            "crossval.models": CROSSVAL_MODELS,
            "crossval.folds": [0, 1, 2],
            "crossval.mark_free_models": MARK_FREE_MODELS,
            "overlays.check.tuning.per_class": 2,
            "overlays.check.held_out.per_class": 2,
        },
    )
    label_samples(root, entries)
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is this venv's
        "BUSI_SOURCE": str(archive),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def label_samples(root: Path, entries) -> None:
    """The overlay check's samples of the synthetic images, labelled as drawn: no marks (the tree draws none)."""
    drawn = draw_samples([e for e in entries if e.kind == "image"], load_params(root / "params.yaml").overlays.check)
    labels = {
        file: LabelRow(file.split("/")[0], sample, False, False, False, False, "unknown", "synthetic")
        for sample, files in drawn.items()
        for file in files
    }
    write_labels(root / "data" / "overlay_labels.csv", labels)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git + DVC copy of the project on 30 synthetic images of 32x32, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    env = tiny_project(root, tmp_path_factory.mktemp("busi"))
    dvc = str(Path(sys.executable).parent / "dvc")
    _run(["git", "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "project"], root, env)
    repro = _run([dvc, "repro"], root, env)
    return {"root": root, "env": env, "dvc": dvc, "repro": repro}


@pytest.fixture
def studies(repo):
    """repo with the repeated and cross-validation studies run at the settings their tests end with: after
    those tests nothing reruns; run alone, this trains them."""
    set_params(repo["root"] / "params.yaml", {**REPEATS_SETTINGS, **CROSSVAL_SETTINGS})
    for pipeline in ("repeats/dvc.yaml", "crossval/dvc.yaml"):
        _run([repo["dvc"], "repro", pipeline], repo["root"], repo["env"])
    return repo


def test_repro_runs_every_stage_and_writes_every_output(repo):
    root = repo["root"]
    stages = ["download", "backbone", "preprocess", "audit", "overlays", "overlays_check", "edits", "split", "leakage"]
    stages.append("report")
    for stage in [*stages, *(f"train@{m}" for m in MODELS), *(f"evaluate@{m}" for m in MODELS)]:
        assert f"Running stage '{stage}'" in repo["repro"].stdout
    assert "repeats/dvc.yaml" not in repo["repro"].stdout  # the plain repro is the single-seed study
    with open(root / "data" / "split.csv", newline="") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (21, 4, 5)
    for model in MODELS:
        detail = json.loads((root / "metrics" / "detail" / f"{model}.json").read_text())
        assert detail["n_test"] == 5
        assert sum(sum(row.values()) for row in detail["confusion"].values()) == 5
        assert detail["accuracy_ci95"]["low"] <= detail["accuracy"] <= detail["accuracy_ci95"]["high"]
        headline = json.loads((root / "metrics" / "headline" / f"{model}.json").read_text())
        assert headline["accuracy"] == detail["accuracy"] and headline["images"] == 5
        with open(root / "plots" / "history" / f"{model}.csv", newline="") as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
        with open(root / "plots" / "predictions" / f"{model}.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == 5
        assert (root / "data" / "checkpoints" / f"{model}.pt").is_file()
    data = json.loads((root / "metrics" / "data.json").read_text())
    assert data["images"]["total"] == 30 and data["marks"]["all"]["calipers"]["total"] == 0  # none drawn
    assert list(data["benchmark_folds"]) == ["fold0", "fold1", "fold2"]
    check = json.loads((root / "metrics" / "overlays.json").read_text())
    assert check["tuning"]["images"] == check["held_out"]["images"] == 6  # two per class in each sample
    report = (root / "plots" / "report" / "report.md").read_text()
    assert all(model in report for model in MODELS) and "Not run" not in report
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
    images = ["plots/audit/label_conflicts.png", "plots/audit/detector_disagreements.png"]
    for image in [*images, *(f"plots/report/{f}.png" for f in REPORT_FIGURES)]:
        assert shown[image][0]["type"] == "image", image


def test_changing_one_models_setting_reruns_only_that_model_and_metrics_diff_shows_it(repo):
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "results"], root, env)
    set_params(root / "params.yaml", {"train.simple_cnn.lr": 0.01})
    out = _run([dvc, "repro"], root, env).stdout
    assert "Running stage 'train@simple_cnn'" in out and "Running stage 'evaluate@simple_cnn'" in out
    assert "Running stage 'train@mobilenet'" not in out and "Running stage 'train@resnet101'" not in out
    diff = json.loads(_run([dvc, "metrics", "diff", "--all", "--json"], root, env).stdout)
    assert set(diff) == {f"metrics/headline/{m}.json" for m in MODELS}
    mobilenet = diff["metrics/headline/mobilenet.json"]["accuracy"]
    assert mobilenet["old"] == mobilenet["new"]
    params = _run([dvc, "params", "diff"], root, env).stdout
    assert "train.simple_cnn.lr" in params and "0.01" in params


def test_repeated_study_trains_only_what_is_missing_and_summarizes(repo):
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    set_params(root / "params.yaml", {"repeat.models": ["simple_cnn", "mobilenet"], "repeat.seeds": [1]})
    first = _run([dvc, "repro", "repeats/dvc.yaml"], root, env).stdout
    stages = ["main_run@simple_cnn", "split@1", "train@simple_cnn-1", "train@mobilenet-1", "evaluate@simple_cnn-1"]
    for stage in [*stages, "summarize"]:
        assert f"Running stage 'repeats/dvc.yaml:{stage}'" in first, stage
    assert "Running stage 'train@" not in first  # the main runs are up to date and are not retrained
    set_params(root / "params.yaml", REPEATS_SETTINGS)
    second = _run([dvc, "repro", "repeats/dvc.yaml"], root, env).stdout
    assert "Running stage 'repeats/dvc.yaml:train@simple_cnn-2'" in second
    for done in ["train@simple_cnn-1", "train@mobilenet-1"]:
        assert f"Running stage 'repeats/dvc.yaml:{done}'" not in second
        assert f"Stage 'repeats/dvc.yaml:{done}' didn't change, skipping" in second
    summary = json.loads((root / "repeats" / "summary.json").read_text())
    assert summary["models"]["simple_cnn"]["accuracy"]["n"] == 3  # the main run and seeds 1 and 2
    assert "simple_cnn_vs_mobilenet" in summary["paired"]
    headline = json.loads((root / "repeats" / "summary" / "simple_cnn.json").read_text())
    assert headline["runs"] == 3
    assert headline["accuracy"] == pytest.approx(summary["models"]["simple_cnn"]["accuracy"]["mean"])
    shown = _run([dvc, "metrics", "show", "--json"], root, env).stdout
    assert "repeats/summary/simple_cnn.json" in shown and "repeats/metrics/seed1" not in shown


def test_crossval_tests_every_image_once_without_leakage_and_pools_them(repo):
    """Run two stages at a time (bcmodels.parallel), as a user with a GPU would: the plain `dvc repro` then finds
    nothing to do, and one training run again on its own gives the same predictions."""
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    out = _run([sys.executable, "-m", "bcmodels.parallel", "crossval/dvc.yaml", "--jobs", "2"], root, env).stdout
    assert (
        "Stage 'crossval/dvc.yaml:train@simple_cnn-0-0' didn't change"
        in _run([dvc, "repro", "crossval/dvc.yaml"], root, env).stdout
    )
    first = root / "crossval" / "predictions" / "fold0-seed0" / "simple_cnn.csv"
    parallel_bytes = first.read_bytes()
    for stage in ("train@simple_cnn-0-0", "evaluate@simple_cnn-0-0"):
        _run([dvc, "repro", "--force", "--single-item", f"crossval/dvc.yaml:{stage}"], root, env)
    assert first.read_bytes() == parallel_bytes
    with open(root / "data" / "audit" / "groups.csv", newline="") as f:
        groups = {row["file"]: row["group"] for row in csv.DictReader(f)}
    tested = {model: {} for model in CROSSVAL_MODELS}
    for fold in (0, 1, 2):
        with open(root / "data" / "crossval" / f"fold{fold}" / "split.csv", newline="") as f:
            sides = {row["file"]: row["split"] for row in csv.DictReader(f)}
        test_groups = {groups[f] for f, s in sides.items() if s == "test"}
        assert not test_groups & {groups[f] for f, s in sides.items() if s in ("train", "val")}
        for model in CROSSVAL_MODELS:
            assert f"crossval/dvc.yaml:train@{model}-{fold}-0: done in" in out
            predictions = root / "crossval" / "predictions" / f"fold{fold}-seed0" / f"{model}.csv"
            with predictions.open(newline="") as f:
                files = [row["file"] for row in csv.DictReader(f)]
            assert sorted(files) == sorted(f for f, s in sides.items() if s == "test"), (model, fold)
            for file in files:
                tested[model][file] = tested[model].get(file, 0) + 1
    excluded = {f for f, s in sides.items() if s == "excluded"}
    for model in CROSSVAL_MODELS:
        assert set(tested[model]) == set(groups) - excluded and set(tested[model].values()) == {1}, model
        headline = json.loads((root / "crossval" / "summary" / f"{model}.json").read_text())
        assert headline["images"] == len(tested[model]) and headline["runs"] == 3, model  # 3 folds, 1 seed
    summary = json.loads((root / "crossval" / "summary.json").read_text())
    mark_free = [f"{m}_mark_free" for m in MARK_FREE_MODELS]
    assert sorted(summary["models"]) == sorted([*CROSSVAL_MODELS, *mark_free])
    assert summary["models"]["simple_cnn_mark_free"]["accuracy"]["value"] is not None
    assert (root / "crossval" / "report.md").is_file()
    shortcuts = json.loads((root / "crossval" / "shortcuts.json").read_text())
    for model in CROSSVAL_MODELS:
        assert {"cam_in_lesion", "marks_removed", "lesion_removed"} <= set(shortcuts["models"][model]), model
    # Adding a seed trains only that seed.
    set_params(root / "params.yaml", CROSSVAL_SETTINGS)
    again = _run([dvc, "repro", "crossval/dvc.yaml"], root, env).stdout
    assert "Running stage 'crossval/dvc.yaml:train@simple_cnn-0-1'" in again
    assert "Running stage 'crossval/dvc.yaml:train@simple_cnn-0-0'" not in again


def test_a_recipe_is_tried_as_an_experiment_on_validation_folds_only_and_compared_with_its_model(repo):
    """With the benchmark's settings (crossval.models: simple_cnn, seeds 0 and 1): `make search` in a copy of the
    project, the workspace left as it was, then the comparison stage on the same validation images."""
    root, env, dvc = repo["root"], repo["env"], repo["dvc"]
    set_params(root / "params.yaml", CROSSVAL_SETTINGS)
    _run([dvc, "repro", "crossval/dvc.yaml"], root, env)  # nothing to do after the benchmark test; run alone, trains it
    recipe = root / "crossval" / "search" / "faster"
    recipe.mkdir(parents=True)
    (recipe / "overrides.txt").write_text("train.simple_cnn.lr=0.03\n")
    untouched = [
        "params.yaml",
        "crossval/dvc.lock",
        *(str(p.relative_to(root)) for p in (root / "crossval" / "predictions").rglob("*.csv")),
    ]
    before = {rel: (root / rel).read_bytes() for rel in untouched}
    out = _run([sys.executable, "-m", "bcmodels.search", "faster", "--model", "simple_cnn"], root, env).stdout
    assert "--temp" in out and "evaluate@" not in out
    assert {rel: (root / rel).read_bytes() for rel in untouched} == before  # the experiment ran in a copy
    refs = _run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).stdout.split()
    (ref,) = [r for r in refs if r.endswith("/search-faster-seed0-1")]
    assert (
        YAML(typ="safe").load(_run(["git", "show", f"{ref}:params.yaml"], root, env).stdout)["train"]["simple_cnn"][
            "lr"
        ]
        == 0.03
    )
    collected = sorted(p.relative_to(recipe).as_posix() for p in recipe.rglob("*.csv"))
    assert collected == [f"fold{f}-seed{s}/simple_cnn.csv" for f in (0, 1, 2) for s in (0, 1)]
    own = root / "crossval" / "validation"
    assert any((recipe / rel).read_bytes() != (own / rel).read_bytes() for rel in collected)  # lr 0.03 trained anew
    _run([dvc, "repro", "crossval/dvc.yaml:summarize_search"], root, env)
    result = json.loads((root / "crossval" / "search.json").read_text())
    faster, simple_cnn = result["recipes"]["faster"], result["models"]["simple_cnn"]
    assert faster["model"] == "simple_cnn" and faster["overrides"] == ["train.simple_cnn.lr=0.03"]
    gain = faster["minus_params_yaml"]["accuracy"]["value"]
    assert gain == pytest.approx(faster["accuracy"]["value"] - simple_cnn["accuracy"]["value"])
    assert "| faster | `train.simple_cnn.lr=0.03` | 0, 1 |" in (root / "crossval" / "search.md").read_text()
    # A seed the benchmark lacks: the experiment makes its stages, and the comparison asks for params.yaml's run.
    out = _run([sys.executable, "-m", "bcmodels.search", "faster", "--model", "simple_cnn", "--seeds", "2"], root, env)
    assert "-S crossval.seeds=[2] crossval/dvc.yaml:train@simple_cnn-0-2" in out.stdout
    assert (recipe / "fold2-seed2" / "simple_cnn.csv").is_file()
    failed = _run([dvc, "repro", "crossval/dvc.yaml:summarize_search"], root, env, ok=False)
    assert failed.returncode != 0
    assert "runs seed 2, which simple_cnn as params.yaml trains it lacks" in failed.stdout + failed.stderr
    for run in recipe.glob("fold*-seed2"):  # the later tests' `dvc repro crossval/dvc.yaml` compares seeds 0 and 1
        shutil.rmtree(run)
    _run([dvc, "repro", "crossval/dvc.yaml:summarize_search"], root, env)


def test_metrics_show_is_one_narrow_row_per_model_and_study_without_warnings(studies):
    """After the three studies have run, as in the committed state of a fresh clone."""
    repo = studies
    result = _run([repo["dvc"], "metrics", "show"], repo["root"], repo["env"])
    rows = result.stdout.strip().splitlines()
    expected = [
        *(f"metrics/headline/{m}.json" for m in sorted(MODELS)),
        *(f"repeats/summary/{m}.json" for m in ("mobilenet", "simple_cnn")),
        # CROSSVAL_SETTINGS narrow crossval.models to simple_cnn, which MARK_FREE_MODELS also run mark-free
        "crossval/summary/simple_cnn.json",
        "crossval/summary/simple_cnn_mark_free.json",
    ]
    assert sorted(row.split()[0] for row in rows[1:]) == sorted(expected)
    assert max(len(row) for row in rows) <= 200
    assert "failed" not in result.stderr.lower() and "warning" not in result.stderr.lower()
    from_api = subprocess.run(
        [sys.executable, "-c", "import dvc.api, json; print(json.dumps(dvc.api.metrics_show()))"],
        cwd=repo["root"],
        env=repo["env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(from_api)["metrics/headline/simple_cnn.json:images"] == 5  # flat "file:key" names
