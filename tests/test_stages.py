"""Commands as a user meets them: a mistake gives one `error:` line and exit status 1, never a traceback."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from bcmodels.errors import ConfigError, run_stage
from tests.conftest import PROJECT_ROOT


def _stage(args: list[str], cwd, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


TRAIN = ["stages.train", "--store", "s", "--split", "s.csv", "--checkpoint", "c.pt", "--history", "h.csv"]


@pytest.mark.slow
def test_unknown_model_name_is_a_clear_error(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path)
    line = _one_error_line(_stage([*TRAIN, "--model", "vgg"], tmp_path))
    assert line.startswith("error: train.vgg: no such model section. Sections:")


def test_missing_local_source_is_a_clear_error(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(PROJECT_ROOT / "data" / "busi_manifest.tsv", tmp_path / "data")
    result = _stage(["stages.download", "--out", "data/raw/x"], tmp_path, BUSI_SOURCE=str(tmp_path / "busi.zip"))
    assert _one_error_line(result).startswith(f"error: {tmp_path / 'busi.zip'}: not found (BUSI_SOURCE must name")
    assert not (tmp_path / "data" / "raw").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "old, new, message",
    [
        ("batch_size: 8", "batch_size: 0", "error: train.batch_size: must be in [1, 4096], got 0"),
        ("batch_size: 8", "batch_size: [8", "Fix the YAML syntax"),  # and names the line
        ("  seed: 0  #", "  seed: 0\n  seed: 1  #", 'found duplicate key "seed"'),
        ("lr: 5.0e-5", "lr: .inf", "error: train.resnet101.lr: must be a finite number, got inf"),
        ("  device: auto", "  device: &d auto\n  x: *d", "YAML aliases (*d) are not supported"),
    ],
)
def test_bad_params_stop_a_stage_naming_the_key(tmp_path, old, new, message):
    text = (PROJECT_ROOT / "params.yaml").read_text()
    assert old in text
    (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
    assert message in _one_error_line(_stage(["stages.split", "--groups", "g.csv", "--out", "s.csv"], tmp_path))


def _exits_with_one_line(capsys, failure: BaseException, status: int = 1) -> str:
    def main():
        raise failure

    with pytest.raises(SystemExit) as exited:
        run_stage(main)
    assert exited.value.code == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_a_full_disk_or_no_permission_is_said_as_such_with_the_path(capsys):
    full = _exits_with_one_line(capsys, OSError(errno.ENOSPC, "No space left on device", "data/processed/x.tmp"))
    assert full == "error: data/processed/x.tmp: the disk is full; free some space and run again\n"
    denied = _exits_with_one_line(capsys, PermissionError(errno.EACCES, "Permission denied", "metrics/a.json"))
    assert "metrics/a.json: permission denied" in denied


def test_out_of_memory_and_ctrl_c_end_in_one_line(capsys):
    assert "out of memory; lower preprocess.image_size" in _exits_with_one_line(capsys, MemoryError())
    assert "interrupted" in _exits_with_one_line(capsys, KeyboardInterrupt(), status=130)
    assert "train.x: bad" in _exits_with_one_line(capsys, ConfigError("train.x: bad"))


def test_a_bug_keeps_its_traceback():
    def main():
        raise ZeroDivisionError("a bug in the project")

    with pytest.raises(ZeroDivisionError):
        run_stage(main)
