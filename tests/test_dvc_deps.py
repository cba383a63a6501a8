"""Every stage of every dvc.yaml lists, as deps, exactly the project modules its command imports, so that a
code change reruns what it can change and `dvc status` never calls a stale result up to date."""

from __future__ import annotations

import re

import pytest
from ruamel.yaml import YAML

from tests.conftest import PROJECT_ROOT
from tests.imports import project_imports

PIPELINES = ["dvc.yaml", "repeats/dvc.yaml", "crossval/dvc.yaml"]
# Plumbing that cannot change a result; listing it would rerun every stage for an error message's wording.
# The packages' __init__.py files hold a docstring only.
EXEMPT = {"bcmodels/errors.py"}


def _exempt(module: str) -> bool:
    return module in EXEMPT or module.endswith("/__init__.py")


def _stages():
    for pipeline in PIPELINES:
        stages = YAML(typ="safe").load((PROJECT_ROOT / pipeline).read_text())["stages"]
        for name, stage in stages.items():
            body = stage.get("do", stage)
            yield pytest.param(pipeline, name, body, id=f"{pipeline}:{name}")


@pytest.mark.parametrize("pipeline, name, stage", list(_stages()))
def test_deps_list_exactly_the_modules_the_command_imports(pipeline, name, stage):
    module = re.search(r"python -m (stages\.\w+)", stage["cmd"])
    if module is None:  # a shell command (main_run@ copies a file): no Python to trace
        return
    script = PROJECT_ROOT / (module.group(1).replace(".", "/") + ".py")
    imported = {m for m in project_imports(PROJECT_ROOT, script) if not _exempt(m)}
    listed = {d for d in stage["deps"] if d.endswith(".py")}
    assert sorted(imported - listed) == [], f"{pipeline}:{name} imports modules it does not list as deps"
    assert sorted(listed - imported) == [], f"{pipeline}:{name} lists modules it does not import"


def test_the_import_tracer_follows_imports_inside_functions_and_skips_type_only_ones(tmp_path):
    (tmp_path / "bcmodels").mkdir()
    (tmp_path / "bcmodels" / "__init__.py").write_text("")
    (tmp_path / "bcmodels" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bcmodels import c\n"
        "def f():\n    import bcmodels.b\n"
    )
    (tmp_path / "bcmodels" / "b.py").write_text("from bcmodels.d import x\n")
    for name in ("c", "d"):
        (tmp_path / "bcmodels" / f"{name}.py").write_text("x = 1\n")
    found = project_imports(tmp_path, tmp_path / "bcmodels" / "a.py")
    assert found == {"bcmodels/a.py", "bcmodels/__init__.py", "bcmodels/b.py", "bcmodels/d.py"}


def test_no_module_imports_a_stage_and_training_imports_neither_downloader_nor_audit():
    train = project_imports(PROJECT_ROOT, PROJECT_ROOT / "stages" / "train.py")
    assert not any(m.startswith("bcmodels/audit/") for m in train)
    assert not {"bcmodels/data/busi.py", "bcmodels/data/preprocess.py", "bcmodels/data/partition.py"} & train
    for module in (PROJECT_ROOT / "bcmodels").rglob("*.py"):
        assert not any(m.startswith("stages/") for m in project_imports(PROJECT_ROOT, module)), module


def test_stage_entry_points_are_thin():
    for script in (PROJECT_ROOT / "stages").glob("*.py"):
        assert len(script.read_text().splitlines()) <= 45, script.name


def test_no_import_cycles():
    modules = {p: project_imports(PROJECT_ROOT, p) for p in (PROJECT_ROOT / "bcmodels").rglob("*.py")}
    for path, imported in modules.items():
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        for other in imported - {rel}:
            if other.endswith("__init__.py"):
                continue
            assert rel not in modules[PROJECT_ROOT / other], f"{rel} and {other} import each other"
