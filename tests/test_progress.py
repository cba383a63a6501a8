"""Progress off a terminal: an occasional plain line, not hundreds of carriage-return redraws."""

from __future__ import annotations

from bcmodels.io import progress


def test_off_a_terminal_progress_prints_a_line_now_and_then_and_one_at_the_end(capsys, monkeypatch):
    clock = iter(range(0, 10_000, 7))  # every call to the clock is 7 "seconds" later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)
    with progress.progress(range(20), desc="train", unit="batch") as bar:
        for i in bar:
            if i == 10:
                bar.set_postfix(loss="0.5")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 1 < len(lines) < 20  # a line every LOG_INTERVAL_S (30 s), not one per batch
    assert lines[-1].startswith("train: 20 of 20 (100%) batch in ") and lines[-1].endswith(", loss 0.5")


def test_on_a_terminal_it_is_tqdm(monkeypatch):
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    bar = progress.progress(range(3), desc="x")
    assert type(bar).__name__ == "tqdm"
    bar.close()


def test_phases_add_up_each_named_phase_after_the_start_up(monkeypatch):
    clock = iter([10.0, 12.5, 20.0, 20.25, 30.0, 31.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(progress.time, "time", lambda: 1000.0)
    monkeypatch.setattr(progress.psutil.Process, "create_time", lambda self: 996.5)  # the process began 3.5 s ago
    phases = progress.Phases("train x")
    with phases("data"):
        pass
    with phases("epochs"):
        pass
    with phases("data"):  # a phase met twice adds up
        pass
    assert phases.seconds == {"start-up": 3.5, "data": 3.5, "epochs": 0.25}
    assert phases.line(epochs="2") == "train x wall time: start-up 3.5 s, data 3.5 s, epochs 0.2 s (2)"
