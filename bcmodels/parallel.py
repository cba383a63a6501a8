"""Several stages at once: `python -m bcmodels.parallel [TARGET ...] --jobs N [--gpus 0,1]`.

`dvc repro` runs one stage after another; the benchmark's trainings (every model, fold and seed) do not
depend on each other. This runs `dvc repro --single-item <stage>` for every stage that the targets (dvc.yaml
files or stage names; default: the three pipelines) still need, at most N at a time, each as soon as every
stage it depends on has finished. With --gpus, the workers take the GPUs in turn (CUDA_VISIBLE_DEVICES), so
N = GPUs x runs per GPU. DVC releases its repository lock while a stage's command runs (its documented parallel
stage execution, dvc.org/doc/command-reference/repro#parallel-stage-execution) but takes it to start and to
record a stage, and refuses a second process then: a stage refused the lock is started again after a pause.
Each stage runs the same command on the same inputs as under a plain `dvc repro`, so the results are the
same; dvc.lock records each stage as it finishes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from dvc.repo import Repo

from bcmodels.errors import ConfigError, DataError, run_stage

PIPELINES = ("dvc.yaml", "repeats/dvc.yaml", "crossval/dvc.yaml")
LOCK_BUSY = "Unable to acquire lock"
LOCK_RETRY_S = 2.0
LOCK_RETRIES = 300  # ten minutes of a busy lock: another `dvc` command of the user's, not a clash


@dataclass(frozen=True)
class Plan:
    """The stages to run, each with the stages among them that it waits for."""

    stages: list[str]  # DVC addresses
    needs: dict[str, set[str]]  # stage -> the stages of the plan it waits for


def _dependencies(graph, stage) -> set:
    """Every stage that stage depends on, directly or through others (an edge runs to a dependency)."""
    found, todo = set(), [stage]
    while todo:
        for dependency in graph.successors(todo.pop()):
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


def _wanted(repo: Repo, graph, targets: Sequence[str]) -> set:
    """The targets' stages and every stage they depend on."""
    wanted = set()
    for target in targets:
        for stage in repo.stage.collect(target):
            wanted |= {stage, *_dependencies(graph, stage)}
    return wanted


def plan(targets: Sequence[str]) -> Plan:
    """The stages that the targets need and that are out of date or depend on one that is."""
    repo = Repo(".")
    graph = repo.index.graph
    wanted = _wanted(repo, graph, targets)
    with repo.lock:  # DVC reads a stage's state under its lock, as `dvc status` does
        changed = {stage for stage in wanted if stage.changed()}
    selected = {stage for stage in wanted if stage in changed or changed & _dependencies(graph, stage)}
    return Plan(
        stages=sorted(s.addressing for s in selected),
        needs={s.addressing: {d.addressing for d in _dependencies(graph, s) & selected} for s in selected},
    )


def commands(targets: Sequence[str]) -> list[tuple[str, str]]:
    """(stage, its command, run from the repository root) for every stage of the targets and all they depend on,
    up to date or not, dependencies first: the pipeline for a machine without DVC (`--commands`)."""
    repo = Repo(".")
    graph = repo.index.graph
    wanted = _wanted(repo, graph, targets)
    order = sorted(wanted, key=lambda s: (len(_dependencies(graph, s) & wanted), s.addressing))
    listed = []
    for stage in order:
        wdir = os.path.relpath(stage.wdir, repo.root_dir)
        cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
        listed.append((stage.addressing, cmd if wdir == "." else f"cd {wdir} && {cmd}"))
    return listed


def _repro(stage: str, gpu: str | None, log: Callable[[str], None]) -> None:
    """`dvc repro --single-item stage`, started again while DVC's lock is busy; DataError if it fails."""
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})}
    for _ in range(LOCK_RETRIES):
        start = time.perf_counter()
        command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode == 0:
            log(f"{stage}: done in {time.perf_counter() - start:.0f} s" + (f" on GPU {gpu}" if gpu else ""))
            return
        if LOCK_BUSY not in done.stderr:
            raise DataError(f"{stage}: `dvc repro --single-item {stage}` failed:\n{done.stderr.strip()[-2000:]}")
        time.sleep(LOCK_RETRY_S)
    raise DataError(f"{stage}: DVC's lock stayed busy for {LOCK_RETRIES * LOCK_RETRY_S:.0f} s; is another dvc running?")


def run(work: Plan, jobs: int, gpus: Sequence[str], log: Callable[[str], None] = print) -> None:
    """Run every stage of the plan once its dependencies are done, at most jobs at a time."""
    done: set[str] = set()
    waiting = list(work.stages)
    running: dict[Future, tuple[str, int]] = {}
    free = list(range(jobs))  # worker slots; slot k uses gpus[k % len(gpus)]
    with ThreadPoolExecutor(jobs) as pool:
        while waiting or running:
            for stage in [s for s in waiting if work.needs[s] <= done][: len(free)]:
                slot = free.pop(0)
                gpu = gpus[slot % len(gpus)] if gpus else None
                running[pool.submit(_repro, stage, gpu, log)] = (stage, slot)
                waiting.remove(stage)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stage, slot = running.pop(future)
                future.result()  # a failed stage stops the run; the stages already done stay recorded
                done.add(stage)
                free.append(slot)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bcmodels.parallel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", default=list(PIPELINES), help="dvc.yaml files or stages (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="stages at a time (default: %(default)s)")
    parser.add_argument("--gpus", default="", help="GPU indices the workers take in turn, e.g. 0,1 (default: none)")
    parser.add_argument(
        "--commands", action="store_true", help="only print every stage's command, dependencies first, and stop"
    )
    args = parser.parse_args(argv)
    if args.commands:
        print("\n".join(f"{stage}\t{cmd}" for stage, cmd in commands(args.targets)))
        return
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be at least 1")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    work = plan(args.targets)
    print(f"{len(work.stages)} stages to run, {args.jobs} at a time" + (f" on GPUs {', '.join(gpus)}" if gpus else ""))
    start = time.perf_counter()
    run(work, args.jobs, gpus, log=lambda line: print(line, flush=True))
    print(f"all {len(work.stages)} stages done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_stage(main)
