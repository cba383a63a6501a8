from __future__ import annotations

import csv
import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bcmodels.config.schema import CLASSES
from bcmodels.errors import ConfigError, run_stage
from bcmodels.formats.checkpoint import load_checkpoint
from bcmodels.io.images import decode, to_square
from bcmodels.models.inference import predict_logits
from bcmodels.predict import command as predict
from tests.conftest import PROJECT_ROOT
from tests.test_gradcam import one_thread, save_tiny, train_tiny  # noqa: F401  (one_thread: autouse fixture)


def _tiny_model(path: Path, arch: str, *, geometry: str, size: int, short_side: int | None = None, seed: int = 0):
    """A model trained for a moment on images whose brightness gives the class, saved as a checkpoint."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(48) % 3
    images = torch.randint(0, 100, (48, 3, size, size), generator=g, dtype=torch.uint8) + (labels * 60).to(
        torch.uint8
    ).view(-1, 1, 1, 1)
    model = train_tiny(images, labels, arch=arch, epochs=1, seed=seed)
    return save_tiny(
        path,
        model,
        arch=arch,
        classes=CLASSES,
        image_size=size,
        geometry=geometry,
        resize_short_side=short_side or size,
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        _tiny_model(folder / "simple.pt", "simple_cnn", geometry="resize", size=32)
        _tiny_model(folder / "mobile.pt", "mobilenet", geometry="letterbox", size=40, seed=1)
    finally:
        torch.set_num_threads(threads)
    return folder


def _rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (and no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _inputs(root: Path) -> tuple[list[str], dict[str, str], set[str]]:
    """A folder and a zip of good and bad images. Returns the arguments, the bad inputs (name -> a word of
    the expected reason) and the good inputs' names."""
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    _rgb(80, 60).save(folder / "good.png")
    _rgb(50, 70, seed=1).save(folder / "sub" / "photo.JPG", quality=90)
    grey16 = (np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "grey16.png")  # mode I;16: scaled to 8 bits like preprocess does
    rgba = np.dstack([np.asarray(_rgb(40, 40, seed=2)), np.full((40, 40), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "transparent.png")
    (folder / "notes.png").write_text("not an image at all\n")
    (folder / "truncated.png").write_bytes(_png_bytes(_rgb(64, 64, seed=3))[:300])
    _rgb(5, 5).save(folder / "tiny.png")
    (folder / "huge.png").write_bytes(_png_header_only(20000, 20000))
    _rgb(300, 20).save(folder / "thin.png")  # 15 : 1, more than MAX_ASPECT
    (folder / "readme.txt").write_text("skipped: not a PNG or JPEG name")
    (folder / ".hidden.png").write_text("skipped: hidden")

    archive = root / "more.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scans/one.png", _png_bytes(_rgb(70, 50, seed=4)))
        zf.writestr("two.png", _png_bytes(_rgb(45, 45, seed=5)))
        zf.writestr("../escape.png", _png_bytes(_rgb(45, 45, seed=6)))
        zf.writestr("/absolute.png", _png_bytes(_rgb(45, 45, seed=7)))
        zf.writestr("broken.png", b"\x89PNG\r\n\x1a\n garbage")
        zf.writestr("__MACOSX/._two.png", b"resource fork")
        zf.writestr("list.csv", "skipped")

    bad = {
        "images/huge.png": "decompression bomb",
        "images/notes.png": "cannot decode",
        "images/thin.png": "MAX_ASPECT",
        "images/tiny.png": "shorter than 8",
        "images/truncated.png": "cannot decode",
        "more.zip:../escape.png": "'..'",
        "more.zip:/absolute.png": "absolute",
        "more.zip:broken.png": "cannot decode",
        "nowhere": "no such file",
    }
    good = {
        "images/good.png",
        "images/grey16.png",
        "images/transparent.png",
        "images/sub/photo.JPG",
        "more.zip:scans/one.png",
        "more.zip:two.png",
    }
    return ["images", "more.zip", "nowhere"], bad, good


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bcmodels.predict", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_cli_classifies_good_inputs_and_names_each_bad_one(tmp_path, checkpoints):
    args, bad, good = _inputs(tmp_path)
    result = _cli(
        [*args, "--checkpoints", str(checkpoints), "--model", "simple,mobile", "--explain", "--out", "out"], tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == len(bad), result.stderr
    for name, word in bad.items():
        (line,) = [line for line in error_lines if line.startswith(f"error: {name}: ")]
        assert word in line

    rows = _read_csv(tmp_path / "out" / "predictions.csv")
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows if r["file"].startswith("images/")) + [
        r["file"] for r in rows if not r["file"].startswith("images/")
    ]  # a folder's files in sorted order, then the zip's members, then the rest, as given
    assert {r["file"] for r in rows} == set(bad) | good  # hidden, macOS and non-image files skipped
    header = list(rows[0])
    assert header[0] == "file" and header[-1] == "error"
    for label in ("simple", "mobile"):  # one column group per model
        group = [f"{label}/predicted", *(f"{label}/p_{c}" for c in CLASSES), f"{label}/heatmap"]
        assert header[header.index(group[0]) : header.index(group[0]) + len(group)] == group
    for row in rows:
        if row["file"] in good:
            assert row["error"] == ""
            for label in ("simple", "mobile"):
                probs = [float(row[f"{label}/p_{c}"]) for c in CLASSES]
                assert sum(probs) == pytest.approx(1, abs=1e-5)
                assert row[f"{label}/predicted"] == CLASSES[int(np.argmax(probs))]
                assert (tmp_path / "out" / row[f"{label}/heatmap"]).is_file()
        else:
            assert bad[row["file"]] in row["error"]
            assert row["simple/predicted"] == row["mobile/p_benign"] == row["simple/heatmap"] == ""
    sheet = Image.open(tmp_path / "out" / "gradcam" / "contact_sheet.png")
    assert sheet.width >= 2 * 160  # two models side by side
    for name in good:  # the table on stdout has every input
        assert name in result.stdout


def _fails_with_one_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_stage(lambda: predict.main(argv))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_missing_checkpoint_names_the_stage_that_makes_it(tmp_path, checkpoints, capsys):
    _rgb(40, 40).save(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = [str(tmp_path / "a.png"), "--checkpoints", str(checkpoints), "--model", "simple,resnet7", "--out", str(out)]
    err = _fails_with_one_line(capsys, argv)
    assert "resnet7.pt: not found" in err and "`dvc repro train@resnet7`" in err
    assert not out.exists()


def test_a_checkpoint_of_another_version_or_architecture_fails_the_run(tmp_path, checkpoints, capsys):
    _rgb(40, 40).save(tmp_path / "a.png")
    content = torch.load(checkpoints / "simple.pt", weights_only=True)
    torch.save({**content, "version": 1}, tmp_path / "old.pt")
    out = ["--out", str(tmp_path / "out")]
    err = _fails_with_one_line(capsys, [str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "old.pt"), *out])
    assert "checkpoint format version 1" in err
    torch.save({**content, "arch": "mobilenet"}, tmp_path / "other.pt")
    err = _fails_with_one_line(capsys, [str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "other.pt"), *out])
    assert "other.pt" in err and "does not fit a mobilenet" in err


def test_preprocessing_is_read_from_the_checkpoint(tmp_path, checkpoints):
    # mobile.pt says letterbox at 40 px: predict must give what letterboxing at 40 by hand gives.
    image = tmp_path / "wide.png"
    _rgb(90, 50, seed=8).save(image)
    outcome = predict.run([image], files=[checkpoints / "mobile.pt"], out=tmp_path / "out", device="cpu")
    (model,) = outcome.models
    c = load_checkpoint(checkpoints / "mobile.pt", "test")
    assert (c.geometry, c.image_size) == ("letterbox", 40)

    def by_hand(geometry: str) -> np.ndarray:
        square = np.array(to_square(decode(image), geometry, 40, 40))
        batch = torch.from_numpy(square).permute(2, 0, 1)[None]
        return torch.softmax(predict_logits(model.model, batch, batch_size=1, mean=c.mean, std=c.std).double(), 1)[0]

    np.testing.assert_allclose(outcome.rows[0].probs["mobile"], by_hand("letterbox"), atol=1e-6)
    assert not np.allclose(outcome.rows[0].probs["mobile"], by_hand("resize"), atol=1e-6)


def test_decoding_threads_do_not_change_the_results(tmp_path, checkpoints):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        _rgb(30 + 3 * i, 40, seed=i).save(folder / f"{i:02d}.png")
    models = predict.load_models(["simple"], [], checkpoints=checkpoints, device=torch.device("cpu"))
    with ExitStack() as stack:
        sources = predict.collect_sources([folder], stack)
        one = predict.predict_sources(sources, models, device=torch.device("cpu"), batch_size=5, workers=1)
        two = predict.predict_sources(sources, models, device=torch.device("cpu"), batch_size=4, workers=3)
    assert len(one) == 12
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.probs["simple"], b.probs["simple"], atol=1e-6)


def test_zip_limits_refuse_a_member_or_the_whole_zip(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("small.png", _png_bytes(_rgb(20, 20)))
        zf.writestr("large.png", _png_bytes(_rgb(200, 200)))
    monkeypatch.setattr(predict, "MAX_MEMBER_BYTES", 10_000)
    with ExitStack() as stack:
        sources = {s.name: s for s in predict.collect_sources([archive], stack)}
        assert sources[f"{archive}:small.png"].read().size == (20, 20)
        assert "MAX_MEMBER_BYTES" in sources[f"{archive}:large.png"].error
        monkeypatch.setattr(predict, "MAX_ZIP_MEMBERS", 1)
        (whole,) = predict.collect_sources([archive], stack)
        assert whole.name == str(archive) and "MAX_ZIP_MEMBERS" in whole.error
    (tmp_path / "fake.zip").write_text("not a zip")
    with ExitStack() as stack:
        (fake,) = predict.collect_sources([tmp_path / "fake.zip"], stack)
    assert "not a readable zip" in fake.error


def test_the_output_folder_must_be_predicts_own(tmp_path, checkpoints):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    _rgb(40, 40).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="holds files predict did not write"):
        predict.run([tmp_path / "a.png"], files=[checkpoints / "simple.pt"], out=tmp_path / "mine", device="cpu")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_usage_and_model_lists(capsys):
    with pytest.raises(SystemExit):
        predict.parse_args(["--help"])
    usage = capsys.readouterr().out
    for option in ("--model", "--checkpoint", "--checkpoints", "--out", "--explain", "--device", "--batch-size"):
        assert option in usage
    args = predict.parse_args(["x.png", "--model", "a,b", "--model", "c"])
    assert predict._names(args.model) == ["a", "b", "c"] and args.out == Path("predictions")
