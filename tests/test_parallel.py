"""Several stages at once (bcmodels.parallel): each stage waits for the stages it depends on, at most --jobs run
together, the workers take the GPUs in turn, and a stage refused DVC's lock is started again."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from bcmodels import parallel
from bcmodels.errors import DataError


def test_stages_start_after_what_they_need_and_never_more_than_jobs_at_once(monkeypatch):
    lock = threading.Lock()
    log: list[tuple[str, str, str | None]] = []
    active, most = [0], [0]

    def fake_repro(stage, gpu, _log):
        with lock:
            log.append(("start", stage, gpu))
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            log.append(("end", stage, gpu))

    monkeypatch.setattr(parallel, "_repro", fake_repro)
    trains = [f"train@{k}" for k in range(6)]
    needs = {"split": set(), **{t: {"split"} for t in trains}, "summarize": {"split", *trains}}
    parallel.run(parallel.Plan(sorted(needs), needs), jobs=3, gpus=["0", "1"])
    order = [(kind, stage) for kind, stage, _ in log]
    assert order[:2] == [("start", "split"), ("end", "split")]
    assert order[-2:] == [("start", "summarize"), ("end", "summarize")]
    assert most[0] == 3  # the six trainings ran three at a time
    assert {gpu for kind, stage, gpu in log if stage in trains} == {"0", "1"}  # both GPUs used


def test_a_stage_refused_the_lock_is_started_again_and_a_failure_names_the_stage(monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(kwargs["env"].get("CUDA_VISIBLE_DEVICES"))
        busy = len(calls) < 3
        stderr = "ERROR: Unable to acquire lock. Most likely another DVC process is running" if busy else ""
        return subprocess.CompletedProcess(command, 1 if busy else 0, "", stderr)

    monkeypatch.setattr(parallel.subprocess, "run", fake_run)
    monkeypatch.setattr(parallel, "LOCK_RETRY_S", 0.0)
    lines = []
    parallel._repro("train@a", "1", lines.append)
    assert calls == ["1", "1", "1"] and lines[0].startswith("train@a: done in")

    monkeypatch.setattr(
        parallel.subprocess,
        "run",
        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", "ERROR: failed to reproduce 'train@b'"),
    )
    with pytest.raises(DataError, match=r"train@b: `dvc repro --single-item train@b` failed"):
        parallel._repro("train@b", None, lines.append)
