"""Atomic writes: a file or folder appears complete under its final name, or not at all.

Everything this package writes (episodes, dataset indexes, token shards, checkpoints, exports, world
models, reports, videos) goes through here: it is written under a temporary name in the destination
folder (so the final `os.replace` is a rename on one filesystem) and renamed when complete. A reader
never sees a half-written file, even if the writer is killed; a killed writer leaves only a `.tmp-*`
entry, which `TMP_PREFIX` lets its owner find and delete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"  # names of unfinished writes start with this


def temp_path(final: str | Path) -> Path:
    """A fresh temporary name beside `final`, keeping its suffix (writers pick formats by extension).

    A unique name rather than mkstemp: mkstemp files are mode 0600, which would make datasets unreadable
    to other users; a file created by the writer gets the usual umask permissions.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f"{TMP_PREFIX}{final.stem}-{uuid.uuid4().hex[:12]}{final.suffix}")


def commit(tmp: Path, final: str | Path) -> None:
    """Move the finished `tmp` onto `final`; a folder already at `final` is moved aside, then deleted."""
    final = Path(final)
    if tmp.is_dir() and final.exists():
        old = temp_path(final)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def discard(tmp: Path) -> None:
    """Delete an unfinished write (file or folder); nothing happens if it is gone."""
    _remove(tmp)


@contextmanager
def atomic_path(final: str | Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final`, on error it is deleted.

    Args:
        final: the file or folder to write.
        folder: create the temporary path as an empty folder to fill (an existing folder at `final` is
            replaced only once the new one is complete).
    """
    tmp = temp_path(final)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        commit(tmp, final)
    except BaseException:
        discard(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
