"""A disk that fills while a stage writes: every writer ends in one `error:` line naming its target, and the
previous output stays whole with no temporary beside it.

Each library is made to fail as it does on a real full disk (measured on a 2 MB tmpfs): numpy's np.save
with an OSError without errno (tests/test_preprocess.py, through the preprocess stage), torch.save with a
RuntimeError raised while handling the system's OSError, Pillow and matplotlib with the system's OSError
(no file name). The file system then reports no free space.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from bcmodels.errors import run_stage
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.io.files import write_json
from bcmodels.render.contact_sheet import contact_sheet
from bcmodels.render.figures import save_figure


def _checkpoint(size: int) -> Checkpoint:
    return Checkpoint(
        model="m",
        arch="simple_cnn",
        classes=("benign", "malignant"),
        geometry="study",
        image_size=16,
        resize_short_side=20,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        model_config={},
        train_config={},
        best_epoch=0,
        epochs_run=1,
        state_dict={"w": torch.arange(size, dtype=torch.float32)},
    )


def _figure(title: str) -> Figure:
    fig = Figure()
    fig.add_subplot().set_title(title)
    return fig


def _torch_fills_the_disk(obj, f, *args, **kwargs) -> None:
    f.write(b"PK\x03\x04 half an archive")
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:  # as torch's C++ writer does: its own error, raised while the system's is handled
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904


def _pillow_fills_the_disk(self, fp, *args, **kwargs) -> None:
    Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half")
    raise OSError(errno.ENOSPC, "No space left on device")


def _text_fills_the_disk(self, data, *args, **kwargs) -> None:
    with open(self, "wb") as f:
        f.write(data[:3].encode())
    raise OSError(errno.ENOSPC, "No space left on device")


# name: (write the target with a value, the library call to fill the disk in, what fills it)
WRITERS: dict[str, tuple[Callable[[Path, int], None], tuple[object, str], Callable]] = {
    "checkpoint": (lambda p, v: save_checkpoint(p, _checkpoint(v)), (torch, "save"), _torch_fills_the_disk),
    "figure": (lambda p, v: save_figure(_figure(str(v)), p), (Figure, "savefig"), _pillow_fills_the_disk),
    "contact sheet": (
        lambda p, v: contact_sheet([[(Image.new("RGB", (20, 20), (v, v, v)), "x")]], p, "t"),
        (Image.Image, "save"),
        _pillow_fills_the_disk,
    ),
    "json": (lambda p, v: write_json(p, {"value": v}), (Path, "write_text"), _text_fills_the_disk),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_full_disk_ends_in_one_line_naming_the_target_and_keeps_the_old_output(tmp_path, monkeypatch, capsys, name):
    write, (owner, attribute), fill = WRITERS[name]
    target = tmp_path / "out" / "target"
    write(target, 1)
    before = target.read_bytes()
    monkeypatch.setattr(owner, attribute, fill)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: write(target, 2))
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: {target}: the disk is full; free some space and run again\n"
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["target"]  # no temporary left
