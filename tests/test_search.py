"""The recipe search: recipes read from their folders, compared with the model's own run on the same images."""

from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval import predictions_path
from bcmodels.evaluation.search import markdown, read_overrides, summarize_search
from bcmodels.formats.predictions import Predictions, write_predictions
from bcmodels.search import check_applied, experiment_command, experiment_ref

FOLDS, N = (0, 1, 2), 60
STATS = {"resamples": 1000, "seed": 0, "bins": 10}


def _probs(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    logits = rng.normal(size=(len(labels), 3))
    logits[np.arange(len(labels)), labels] += skill
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


PARAMS = {"train": {"m": {"lr": 1.0e-4, "seed": 0}}}  # params.yaml as the summary reads it: "same" sets its values


def _write_runs(root, model: str, files, labels, probs, seed: int = 0) -> None:
    for fold in FOLDS:
        rows = slice(20 * fold, 20 * fold + 20)
        write_predictions(
            predictions_path(root, fold, seed, model), Predictions(files[rows], CLASSES, labels[rows], probs[rows])
        )


@pytest.fixture
def search(tmp_path):
    """The model's own validation predictions and two recipes: a better one and an exact copy of the model."""
    rng = np.random.default_rng(1)
    files = [f"img{i:02d}.png" for i in range(N)]
    labels = rng.choice(3, size=N, p=[0.55, 0.3, 0.15])
    own, better = _probs(rng, labels, 0.5), _probs(rng, labels, 3.0)
    _write_runs(tmp_path / "validation", "m", files, labels, own)
    for name, probs, overrides in (
        ("better", better, "train.m.lr=3e-4\n"),
        ("same", own, "# none really\ntrain.m.seed=0\n"),
    ):
        _write_runs(tmp_path / "search" / name, "m", files, labels, probs)
        (tmp_path / "search" / name / "overrides.txt").write_text(overrides)
    mean = (own + better + own) / 3  # the model's run and its two recipes', averaged
    accuracy = {k: float(np.mean(p.argmax(axis=1) == labels)) for k, p in (("own", own), ("better", better))}
    accuracy["ensemble"] = float(np.mean(mean.argmax(axis=1) == labels))
    return {"root": tmp_path, "accuracy": accuracy, "rng": rng, "files": files, "labels": labels, "own": own}


def test_each_recipe_is_compared_with_the_models_own_run_on_the_same_images(search):
    root, accuracy = search["root"], search["accuracy"]
    result = summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    assert result["split"] == "validation" and result["images"] == N and sorted(result["recipes"]) == ["better", "same"]
    assert list(result["models"]) == ["m"]
    assert result["models"]["m"]["accuracy"]["value"] == pytest.approx(accuracy["own"])
    better = result["recipes"]["better"]
    assert better["model"] == "m" and better["overrides"] == ["train.m.lr=3e-4"]
    assert better["accuracy"]["value"] == pytest.approx(accuracy["better"])
    gain = better["minus_params_yaml"]["accuracy"]
    assert gain["value"] == pytest.approx(accuracy["better"] - accuracy["own"]) and gain["value"] > 0.2
    assert gain["ci95"]["low"] > 0  # far better on the same images
    same = result["recipes"]["same"]["minus_params_yaml"]
    for name in ("accuracy", "macro_f1", "macro_auc"):  # paired: identical predictions differ by 0 in every resample
        assert same[name]["value"] == 0 and same[name]["ci95"] == {"low": 0, "high": 0}
    ensemble = result["ensembles"]["m"]
    assert ensemble["of"] == ["m seed 0", "better seed 0", "same seed 0"] and "ensemble" not in result["recipes"]
    assert result["seed_means"] == {}  # one seed: nothing to average
    assert ensemble["accuracy"]["value"] == pytest.approx(accuracy["ensemble"])
    assert ensemble["minus_params_yaml"]["accuracy"]["value"] == pytest.approx(accuracy["ensemble"] - accuracy["own"])
    table = markdown(result)
    assert "| m (params.yaml) |  | 0 |" in table and "| better | `train.m.lr=3e-4` | 0 |" in table and "+0." in table
    assert "| ensemble (not a recipe) | mean probability of the 3 runs above |" in table


def test_seeds_the_benchmark_lacks_come_from_the_recipe_of_params_yamls_own_values_and_pair_seed_by_seed(search):
    """The benchmark ran seed 0; `make search SEEDS=1` ran "same" (params.yaml's values) and "better" with seed 1."""
    root, rng, files, labels = search["root"], search["rng"], search["files"], search["labels"]
    own1, better1 = _probs(rng, labels, 0.5), _probs(rng, labels, 0.5)  # with seed 1 "better" is no better
    _write_runs(root / "search" / "same", "m", files, labels, own1, seed=1)
    _write_runs(root / "search" / "better", "m", files, labels, better1, seed=1)
    result = summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    accuracy = {k: float(np.mean(p.argmax(axis=1) == labels)) for k, p in (("own1", own1), ("better1", better1))}
    own = result["models"]["m"]
    assert own["seeds"] == [0, 1]
    assert own["accuracy_per_seed"] == pytest.approx({"0": search["accuracy"]["own"], "1": accuracy["own1"]})
    assert own["accuracy"]["value"] == pytest.approx((search["accuracy"]["own"] + accuracy["own1"]) / 2)
    better = result["recipes"]["better"]
    per_seed = {
        "0": search["accuracy"]["better"] - search["accuracy"]["own"],
        "1": accuracy["better1"] - accuracy["own1"],
    }
    assert better["seeds"] == [0, 1] and better["accuracy_minus_params_yaml_per_seed"] == pytest.approx(per_seed)
    assert better["minus_params_yaml"]["accuracy"]["value"] == pytest.approx(sum(per_seed.values()) / 2)
    averaged = result["seed_means"]["m"]  # params.yaml's two runs, their probabilities averaged image by image
    mean_accuracy = float(np.mean(((search["own"] + own1) / 2).argmax(axis=1) == labels))
    assert averaged["seeds"] == [0, 1] and averaged["accuracy"]["value"] == pytest.approx(mean_accuracy)
    assert averaged["minus_params_yaml"]["accuracy"]["value"] == pytest.approx(mean_accuracy - own["accuracy"]["value"])
    same = result["recipes"]["same"]  # its seed 1 is params.yaml's own run: compared on seed 0 alone
    assert same["seeds"] == [0] and same["minus_params_yaml"]["accuracy"]["value"] == 0
    assert result["ensembles"]["m"]["of"] == ["m seed 0", "m seed 1", "better seed 0", "better seed 1", "same seed 0"]
    table = markdown(result)
    assert "| better | `train.m.lr=3e-4` | 0, 1 |" in table
    assert "| seeds_averaged (not a recipe) | mean probability of the 2 runs above | 0, 1 |" in table
    assert (
        f"| m (params.yaml) | accuracy per seed: {search['accuracy']['own']:.2f}, {accuracy['own1']:.2f} | 0, 1 |"
        in table
    )
    _write_runs(root / "search" / "better", "m", files, labels, better1, seed=2)
    with pytest.raises(DataError, match=r"better: runs seed 2, which m as params.yaml .* lacks.*RECIPE=same SEEDS=2"):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    shutil.copytree(root / "search" / "same", root / "search" / "same_twice")
    with pytest.raises(DataError, match=r"same, same_twice all set only params\.yaml's own values; keep one"):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)


def test_without_recipes_the_table_says_none_was_tried(search):
    root = search["root"]
    (root / "empty").mkdir()
    result = summarize_search(root / "validation", root / "empty", FOLDS, [0], PARAMS, **STATS)
    text = markdown(result)
    assert result["recipes"] == {} and "No recipe tried yet" in text and "None" not in text


def test_a_recipe_without_all_its_runs_of_one_model_or_named_as_a_row_of_the_table_is_refused(search):
    root = search["root"]
    predictions_path(root / "search" / "better", 2, 0, "m").unlink()
    with pytest.raises(DataError, match=r"better.*fold2-seed0.*m\.csv"):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    shutil.copy(
        predictions_path(root / "search" / "same", 0, 0, "m"), predictions_path(root / "search" / "same", 0, 0, "n")
    )
    with pytest.raises(DataError, match=r"same: holds predictions of m, n; a recipe holds those of the one model"):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    shutil.rmtree(root / "search" / "same")
    shutil.copytree(root / "search" / "better", root / "search" / "m")
    with pytest.raises(DataError, match="may not be named m "):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)
    (root / "search" / "m").rename(root / "search" / "ensemble")
    with pytest.raises(DataError, match="may not be named ensemble "):
        summarize_search(root / "validation", root / "search", FOLDS, [0], PARAMS, **STATS)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, r"overrides\.txt: missing"),
        ("# only a comment\n\n", r"overrides\.txt: sets nothing"),
        ("train.m.lr=1e-4\ntrain.m.lr 3e-4\n", r"overrides\.txt, line 2: 'train\.m\.lr 3e-4' is not key=value"),
        ("=3\n", r"line 1: '=3' is not key=value"),
    ],
)
def test_a_recipe_file_that_is_missing_or_not_key_value_is_refused_with_its_line(tmp_path, text, error):
    path = tmp_path / "overrides.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DataError, match=error):
        read_overrides(path)


def test_a_recipe_reruns_only_the_models_train_and_validate_stages_in_a_copy_of_the_project():
    command = experiment_command("lower_lr", ["train.m.lr=1e-5", "train.max_epochs=30"], "m", (0, 1), (0, 5))
    assert command[:5] == ["dvc", "exp", "run", "--temp", "--single-item"]
    assert command[command.index("-n") + 1] == "search-lower_lr-seed0-5"
    assert [a for a, b in itertools.pairwise(command) if b.startswith("train.")] == ["-S", "-S"]
    stages = [a.split(":", 1)[1] for a in command if a.startswith("crossval/dvc.yaml:")]
    runs = ["m-0-0", "m-0-5", "m-1-0", "m-1-5"]
    assert stages == [f"train@{r}" for r in runs] + [f"validate@{r}" for r in runs]  # never evaluate: no test image


@pytest.fixture
def git(tmp_path, monkeypatch):
    """git in a new repository at tmp_path, which becomes the working directory (as for `make search`)."""

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    run("init", "-q")
    monkeypatch.chdir(tmp_path)
    return run


def test_a_recipes_experiment_is_found_on_the_commit_it_started_from_after_a_later_commit(git):
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start")
    start = git("rev-parse", "HEAD").strip()
    git("update-ref", f"refs/exps/{start[:2]}/{start[2:]}/search-lower_lr", start)  # where DVC keeps it
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "while it ran")
    assert experiment_ref("search-lower_lr", start).endswith(f"{start[2:]}/search-lower_lr")
    later = git("rev-parse", "HEAD").strip()
    with pytest.raises(DataError, match=f"no experiment search-lower_lr on commit {later[:7]}"):
        experiment_ref("search-lower_lr", later)


def test_an_experiment_whose_params_lack_an_override_is_refused(git, tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  m:\n    lr: 1.0e-4\n    imbalance: none\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    head = git("rev-parse", "HEAD").strip()
    git("update-ref", f"refs/exps/{head[:2]}/{head[2:]}/search-r", head)  # an experiment that kept params.yaml
    check_applied(
        experiment_ref("search-r", head), ["train.m.lr=1.0e-4", "train.m.imbalance=none"]
    )  # 1.0e-4 and 0.0001 are one float
    with pytest.raises(DataError, match=r"search-r trained with train\.m\.lr=0\.0001, not 1\.0e-3"):
        check_applied(experiment_ref("search-r", head), ["train.m.imbalance=none", "train.m.lr=1.0e-3"])
    with pytest.raises(DataError, match=r"trained with train\.m\.seed=None, not 1"):
        check_applied(experiment_ref("search-r", head), ["train.m.seed=1"])
