"""Read-only folders and full disks, made on demand under tmp_path.

`read_only(folder)` chmods the folder; where that does not stop writes (the tests run as root), Python's
file creation under the folder is refused too (open, os.open, mkdir, rename), raising the PermissionError
the operating system would. `full_disk(folder)` makes every write() to a file under the folder raise
ENOSPC, as a full disk does (the OSError of a failed write() names no file). Writers outside Python
(ffmpeg) are faked where their tests need it.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# a tiny untrained 32x32 world model and a dataset for it, shared with the eval tests
from tests.eval.test_predict import data_dir, model_dir  # noqa: F401

_WRITE_MODES = set("wax+")


def _inside(path: Any, folder: Path) -> bool:
    if isinstance(path, int):  # an open file descriptor
        return False
    try:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder)
    except (TypeError, ValueError):
        return False


def _can_write(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return False
    probe.unlink()
    return True


def _patch_open(monkeypatch: pytest.MonkeyPatch, wrap: Callable[[Any, Any, str], Any]) -> None:
    """Route builtins.open and io.open (pathlib, zipfile and numpy use one or the other) through `wrap`."""
    real = io.open

    def patched(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return wrap(lambda: real(file, mode, *args, **kwargs), file, mode)

    monkeypatch.setattr(builtins, "open", patched)
    monkeypatch.setattr(io, "open", patched)


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], Path]]:
    """read_only(folder): make (if needed) `folder` and refuse every write inside it."""
    made: list[Path] = []

    def make(folder: Path) -> Path:
        folder = Path(os.path.abspath(folder))
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        if not _can_write(folder):
            return folder

        def denied(path: Any) -> PermissionError:
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

        def wrap(opener: Callable[[], Any], file: Any, mode: str) -> Any:
            if _WRITE_MODES & set(mode) and _inside(file, folder):
                raise denied(file)
            return opener()

        _patch_open(monkeypatch, wrap)
        real_os_open, real_mkdir = os.open, os.mkdir
        real_replace, real_rename = os.replace, os.rename

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _inside(path, folder):
                raise denied(path)
            return real_os_open(path, flags, *args, **kwargs)

        def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
            def call(*paths: Any, **kwargs: Any) -> Any:
                for path in paths:
                    if _inside(path, folder):
                        raise denied(path)
                return real(*paths, **kwargs)
            return call

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: guarded(real_mkdir)(path, *a, **k))
        monkeypatch.setattr(os, "replace", guarded(real_replace))
        monkeypatch.setattr(os, "rename", guarded(real_rename))
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


class _FullFile:
    """A file whose write() fails with ENOSPC once `room` bytes have been written."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data: Any) -> int:
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def __enter__(self) -> _FullFile:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """full_disk(folder, room=0, only=""): a file under `folder` (whose name holds `only`) fails to take
    more than `room` bytes, with ENOSPC."""

    def make(folder: Path, room: int = 0, only: str = "") -> None:
        folder = Path(os.path.abspath(folder))

        def wrap(opener: Callable[[], Any], file: Any, mode: str) -> Any:
            f = opener()
            hit = _WRITE_MODES & set(mode) and _inside(file, folder) and only in os.fsdecode(file)
            return _FullFile(f, room) if hit else f

        _patch_open(monkeypatch, wrap)

    return make
