from __future__ import annotations

import csv
import errno
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
from bcmodels.errors import ConfigError, DataError, run_stage
from bcmodels.evaluation.best import DEFAULT_MODEL
from bcmodels.formats.checkpoint import load_checkpoint
from bcmodels.io.images import decode, mask_square, to_square
from bcmodels.models.gradcam import explain
from bcmodels.models.inference import predict_logits
from bcmodels.predict import classify, inputs
from bcmodels.predict import command as predict
from tests.conftest import PROJECT_ROOT, project_params
from tests.test_archives import _patch_zip, _snapshot
from tests.test_download import _no_hang
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


def _cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bcmodels.predict", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
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


def test_without_a_model_the_benchmarks_best_main_run_checkpoint_is_used(tmp_path, checkpoints, capsys):
    _rgb(40, 40).save(tmp_path / "a.png")
    err = _fails_with_one_line(capsys, [str(tmp_path / "a.png"), "--checkpoints", str(checkpoints)])
    assert f"{DEFAULT_MODEL}.pt: not found" in err and f"`dvc repro train@{DEFAULT_MODEL}`" in err
    assert DEFAULT_MODEL in project_params().train.models  # the main run trains it


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
    models = classify.load_models(["simple"], [], checkpoints=checkpoints, device=torch.device("cpu"))
    with ExitStack() as stack:
        sources = inputs.collect_sources([folder], stack)
        one = classify.predict_sources(sources, models, device=torch.device("cpu"), batch_size=5, workers=1)
        two = classify.predict_sources(sources, models, device=torch.device("cpu"), batch_size=4, workers=3)
    assert len(one) == 12
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.probs["simple"], b.probs["simple"], atol=1e-6)


def test_zip_limits_refuse_a_member_or_the_whole_zip(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("small.png", _png_bytes(_rgb(20, 20)))
        zf.writestr("large.png", _png_bytes(_rgb(200, 200)))
    monkeypatch.setattr(inputs, "MAX_MEMBER_BYTES", 10_000)
    with ExitStack() as stack:
        sources = {s.name: s for s in inputs.collect_sources([archive], stack)}
        assert sources[f"{archive}:small.png"].read().size == (20, 20)
        assert "MAX_MEMBER_BYTES" in sources[f"{archive}:large.png"].error
        monkeypatch.setattr(inputs, "MAX_ZIP_MEMBERS", 1)
        (whole,) = inputs.collect_sources([archive], stack)
        assert whole.name == str(archive) and "MAX_ZIP_MEMBERS (1)" in whole.error
    (tmp_path / "fake.zip").write_text("not a zip")
    with ExitStack() as stack:
        (fake,) = inputs.collect_sources([tmp_path / "fake.zip"], stack)
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


def test_zip_members_pass_the_download_stages_rules(tmp_path):
    """One home for the rules (bcmodels.io.archives): a link, a device and an encrypted member are refused by
    name, as the download stage refuses them, and the other members are still read."""
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.png", _png_bytes(_rgb(20, 20)))
        zf.writestr("locked.png", _png_bytes(_rgb(20, 20, seed=1)))
        for name, mode in (("link.png", 0o120777), ("pipe.png", 0o010644)):  # S_IFLNK, S_IFIFO
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"x")
    _patch_zip(archive, "locked.png", flag=0x1)
    with ExitStack() as stack:
        sources = {s.name.removeprefix(f"{archive}:"): s for s in inputs.collect_sources([archive], stack)}
        assert sources["good.png"].read().size == (20, 20)
    assert sources["link.png"].error == "refused: the member is a symbolic link"
    assert sources["pipe.png"].error == "refused: the member is not a regular file (a device or pipe)"
    assert sources["locked.png"].error == (
        "refused: the member is encrypted; extract the zip with its password and give the extracted folder instead"
    )


@pytest.mark.slow
def test_a_fifo_among_the_inputs_is_an_error_of_its_own_not_a_hang(tmp_path, checkpoints):
    """Opening a named pipe waits for a writer for ever: one in a folder, or named on the command line, is
    refused unopened, and every other input is still classified."""
    folder = tmp_path / "images"
    folder.mkdir()
    _rgb(40, 40).save(folder / "a.png")
    os.mkfifo(folder / "b.png")
    os.mkfifo(tmp_path / "pipe.png")
    result = _cli(["images", "pipe.png", "--checkpoints", str(checkpoints), "--model", "simple"], tmp_path, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: pipe.png: a named pipe (FIFO), neither a file nor a folder; give image files, folders or zips",
        "error: images/b.png: a named pipe (FIFO), not a regular file; refused",
    ]
    rows = {r["file"]: r for r in _read_csv(tmp_path / "predictions" / "predictions.csv")}
    assert list(rows) == ["images/a.png", "images/b.png", "pipe.png"]
    assert rows["images/a.png"]["error"] == "" and rows["images/a.png"]["simple/predicted"] in CLASSES
    assert rows["images/b.png"]["simple/predicted"] == "" and "named pipe" in rows["images/b.png"]["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "pipe.png", "predictions"]  # no temporaries


def test_a_fifo_swapped_in_after_the_listing_does_not_block_the_decoder(tmp_path):
    fifo = tmp_path / "late.png"
    os.mkfifo(fifo)
    with _no_hang(), pytest.raises(DataError, match=f"{fifo}: a named pipe \\(FIFO\\), not a regular file"):
        inputs.read_file(fifo)


@pytest.mark.parametrize("target", ["folder", "file", "nothing"])
def test_an_out_that_is_a_symbolic_link_is_refused_and_nothing_is_left(tmp_path, checkpoints, capsys, target):
    """predict replaces --out as a whole: through a link it would replace the link (leaving its target stale)
    or fail half-way, so a link, dangling or not, is refused before anything is written."""
    _rgb(40, 40).save(tmp_path / "a.png")
    pointed = tmp_path / "elsewhere"
    if target == "folder":
        pointed.mkdir()
        (pointed / "predictions.csv").write_text("an earlier run\n")  # a folder predict may replace, if it were one
    elif target == "file":
        pointed.write_text("precious\n")
    out = tmp_path / "out"
    out.symlink_to(pointed)
    before = _snapshot(tmp_path)
    argv = [str(tmp_path / "a.png"), "--checkpoint", str(checkpoints / "simple.pt"), "--out", str(out)]
    err = _fails_with_one_line(capsys, argv)
    assert err == (
        f"error: --out {out}: a symbolic link; predict replaces its folder as a whole, so name a real folder (a new "
        "one, or one of its earlier runs)"
    )
    assert _snapshot(tmp_path) == before and out.is_symlink()  # no .old or .tmp folder, the link untouched
    if target == "folder":
        assert sorted(pointed.iterdir()) == [pointed / "predictions.csv"]
        assert (pointed / "predictions.csv").read_text() == "an earlier run\n"
    elif target == "file":
        assert pointed.read_text() == "precious\n"


def test_a_folder_that_cannot_be_listed_is_an_input_that_failed(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    (folder / "locked").mkdir(parents=True)
    _rgb(40, 40).save(folder / "a.png")
    _rgb(40, 40).save(folder / "locked" / "b.png")
    real_scandir = os.scandir

    def scandir(path="."):  # as listing a chmod 000 folder fails for a user (root lists it anyway)
        if Path(path) == folder / "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with ExitStack() as stack:
        sources = inputs.collect_sources([folder], stack)
    assert [(s.name, s.error) for s in sources] == [
        (str(folder / "a.png"), None),
        (str(folder / "locked"), "cannot list this folder: permission denied; check the owner and mode of that path"),
    ]  # not silently skipped, as os.walk would


def test_an_out_below_a_file_is_refused_before_anything_is_written(tmp_path, checkpoints):
    _rgb(40, 40).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match=f"--out {tmp_path}/a.png/out: {tmp_path}/a.png is not a folder"):
        predict.run([tmp_path / "a.png"], files=[checkpoints / "simple.pt"], out=tmp_path / "a.png" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def _mask_png(path: Path, w: int, h: int, box: tuple[int, int, int, int], levels: tuple[int, ...] = (255,)) -> None:
    """A mask of w x h: the box (x0, y0, x1, y1) drawn in the given grey levels, one band each; 0 elsewhere."""
    grey = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    for k, level in enumerate(levels):
        grey[y0:y1, x0 + k * (x1 - x0) // len(levels) : x0 + (k + 1) * (x1 - x0) // len(levels)] = level
    Image.fromarray(grey).save(path)


def test_masks_beside_an_image_give_its_heat_maps_share_in_the_lesion_and_are_not_classified(tmp_path, checkpoints):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name, seed in (("a", 10), ("b", 11), ("c", 12), ("d", 13), ("orphan_mask", 14)):
        _rgb(80, 60, seed=seed).save(folder / f"{name}.png")
    _mask_png(folder / "a_mask.png", 80, 60, (0, 0, 40, 60))  # BUSI's naming: two masks, joined
    _mask_png(folder / "a_mask_1.png", 80, 60, (60, 10, 80, 30))
    _mask_png(folder / "c_mask.png", 80, 60, (0, 0, 0, 0))  # a normal image's empty mask: no share
    _mask_png(folder / "d_mask.png", 80, 60, (10, 10, 40, 40), levels=(100, 255))  # not binary
    out = tmp_path / "out"
    outcome = predict.run([folder], files=[checkpoints / "simple.pt"], out=out, explain_maps=True, lesion_masks=True)
    names = [Path(r.name).name for r in outcome.rows]
    assert names == ["a.png", "b.png", "c.png", "d.png", "orphan_mask.png"]  # masks of an image are no inputs
    rows = {Path(r["file"]).name: r for r in _read_csv(out / "predictions.csv")}
    assert "not a binary mask" in rows["d.png"]["error"] and "d_mask.png" in rows["d.png"]["error"]
    assert rows["b.png"]["simple/lesion_share"] == rows["c.png"]["simple/lesion_share"] == ""

    # The share by hand: the fold's Grad-CAM of the predicted class, against both masks joined and made square.
    model = outcome.models[0]
    c = model.checkpoint
    square = torch.from_numpy(np.array(to_square(decode(folder / "a.png"), c.geometry, c.image_size, 32)))
    x = square.permute(2, 0, 1)[None]
    called = predict_logits(model.model, x, batch_size=1, mean=c.mean, std=c.std).argmax(1)
    cam = explain(model.model, x, called, model.layer, batch_size=1, mean=c.mean, std=c.std)[0].numpy()
    masks = [folder / "a_mask.png", folder / "a_mask_1.png"]
    both, first = (mask_square(m, (80, 60), c.geometry, c.image_size, 32) for m in (masks, masks[:1]))
    assert float(rows["a.png"]["simple/lesion_share"]) == pytest.approx((cam * both).sum() / cam.sum(), abs=1e-4)
    assert abs((cam * both).sum() - (cam * first).sum()) / cam.sum() > 1e-3  # the second mask counts
    alone = predict.run(
        [folder / "a.png"],
        files=[checkpoints / "simple.pt"],
        out=tmp_path / "one",
        explain_maps=True,
        lesion_masks=True,
    )
    assert alone.rows[0].lesion_share == pytest.approx(
        {"simple": float(rows["a.png"]["simple/lesion_share"])}, abs=1e-4
    )
    with pytest.raises(ConfigError, match=r"--masks .* give --explain too"):
        predict.run([folder], files=[checkpoints / "simple.pt"], out=tmp_path / "none", lesion_masks=True)
