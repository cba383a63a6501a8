"""Stage entry points as a user meets them: a mistake gives one clear line and exit status 1, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def _stage(args: list[str], cwd, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_unknown_model_name_is_a_clear_error(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path)
    result = _stage(["stages.train", "--model", "vgg"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: train.vgg: no such model section. Sections:")
    assert "Traceback" not in result.stderr


def test_missing_local_source_is_a_clear_error(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(PROJECT_ROOT / "data" / "busi_manifest.tsv", tmp_path / "data")
    result = _stage(["stages.download"], tmp_path, BUSI_SOURCE=str(tmp_path / "busi.zip"))
    assert result.returncode == 1
    assert f"error: {tmp_path / 'busi.zip'}: not found (BUSI_SOURCE must name a BUSI zip" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw" / "Dataset_BUSI_with_GT").exists()


def test_bad_params_stop_a_stage_naming_the_key(tmp_path):
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("batch_size: 8", "batch_size: 0")
    (tmp_path / "params.yaml").write_text(text)
    result = _stage(["stages.split"], tmp_path)
    assert result.returncode == 1
    assert "error: train.batch_size: must be positive, got 0" in result.stderr
