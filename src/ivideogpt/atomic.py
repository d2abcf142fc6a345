"""Writing outputs: a file or folder appears complete under its final name, or not at all.

Everything this package writes (episodes, dataset indexes, token shards, checkpoints, exports, world
models, reports, videos) goes through here: it is written under a temporary name in the destination
folder (so the final `os.replace` is a rename on one filesystem) and renamed when complete. A reader
never sees a half-written file, even if the writer is killed; a killed writer leaves only a `.tmp-*`
entry, which `TMP_PREFIX` lets its owner find and delete.

Every command that writes also follows these rules:

- An output folder that already holds something is refused unless the caller asks to replace it, and then
  it is replaced only by complete new contents (`ReplacedFolder`), never when it holds files that are not
  the command's own.
- Before long work, the output folder is created and checked to be writable (`check_writable`).
- A failed write raises an `OSError` naming the file (`naming`, `atomic_path`), also where the writer is a
  C library that reports a full disk in its own words (`save_torch`, `save_safetensors`);
  `describe_os_error` turns one into the single line the command line prints.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

# torch and safetensors are imported where they are used: dataset code imports this module too
TMP_PREFIX = ".tmp-"  # names of unfinished writes start with this
_FULL = (errno.ENOSPC, errno.EDQUOT)


# ---------------------------------------------------------------------------------------- atomic writes


def temp_path(final: str | Path) -> Path:
    """A fresh temporary name beside `final`, keeping its suffix (writers pick formats by extension).

    A unique name rather than mkstemp: mkstemp files are mode 0600, which would make datasets unreadable
    to other users; a file created by the writer gets the usual umask permissions.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f"{TMP_PREFIX}{final.stem}-{uuid.uuid4().hex[:12]}{final.suffix}")


def partial_path(final: str | Path) -> Path:
    """Where a long, resumable output is built beside `final` (a token shard, a plan's finished episodes):
    a fixed hidden name, unlike `temp_path`, so that a rerun finds what a killed writer left."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def commit(tmp: Path, final: str | Path) -> None:
    """Move the finished `tmp` onto `final`; a folder already at `final` is moved aside, then deleted.

    The old folder is deleted only once the new one is in place: if the rename fails, it is put back.
    """
    final = Path(final)
    if tmp.is_dir() and final.exists():
        old = temp_path(final)
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        _remove(old)
    else:
        os.replace(tmp, final)


def discard(tmp: Path) -> None:
    """Delete an unfinished write (file or folder); nothing happens if it is gone."""
    _remove(tmp)


@contextlib.contextmanager
def atomic_path(final: str | Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final`, on error it is deleted.

    A failed write inside the block (a full disk) raises an `OSError` naming `final`.

    Args:
        final: the file or folder to write.
        folder: create the temporary path as an empty folder to fill (an existing folder at `final` is
            replaced only once the new one is complete).
    """
    tmp = temp_path(final)
    if folder:
        tmp.mkdir()
    try:
        with naming(final):
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


# ---------------------------------------------------------------------------------------- output folders


def check_replaceable(out: Path, what: str, owns: Callable[[str], bool], overwrite: bool,
                      flag: str = "--overwrite") -> bool:
    """Whether `out` holds something to replace (False when it is absent or empty).

    Raises:
        FileExistsError: `out` is not a folder; or it is not empty and `overwrite` is off; or it holds
            names `owns` does not claim (they are listed: nothing of the user's is ever deleted).
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not names:
        return False
    if not overwrite:
        raise FileExistsError(f"{out}: folder is not empty (holds {_listing(names)}); pass {flag} to replace "
                              f"the {what} in it, or choose another folder")
    foreign = [n for n in names if not owns(n)]
    if foreign:
        raise FileExistsError(f"{out}: refusing to replace it: {_listing(foreign)} "
                              f"{'is' if len(foreign) == 1 else 'are'} not part of the {what}; move "
                              f"{'it' if len(foreign) == 1 else 'them'} away or choose another folder")
    return True


class ReplacedFolder:
    """Where to write a new folder `out` so that an earlier one is replaced only by a complete one.

    With something to replace (or `always_stage`), the new contents go to a temporary folder beside
    `out` (`work`); `commit` swaps it in (see `commit` above), `discard` deletes it and leaves `out` as
    it was. Otherwise `work` is `out` itself and both are no-ops (what was written stays, e.g. the
    episodes of an interrupted collection). As a context manager: commit on success, discard on an error.
    """

    def __init__(self, out: str | Path, what: str, owns: Callable[[str], bool], overwrite: bool,
                 always_stage: bool = False, flag: str = "--overwrite") -> None:
        self.out = Path(out)
        replacing = check_replaceable(self.out, what, owns, overwrite, flag)
        try:
            self.work = temp_path(self.out) if replacing or always_stage else self.out
            self.work.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # named after the folder the user gave, not the temporary one
            raise _renamed(e, self.out) from e

    def commit(self) -> Path:
        """Move the new contents to `out` (the old ones are deleted only once the new are in place)."""
        if self.work != self.out:
            commit(self.work, self.out)
            self.work = self.out
        return self.out

    def discard(self) -> None:
        """Delete the unfinished new contents; `out` keeps what it held."""
        if self.work != self.out:
            discard(self.work)

    def __enter__(self) -> Path:
        return self.work

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def check_writable(folder: str | Path) -> Path:
    """Create `folder` (and its parents) and check that a file can be written in it, before long work.

    Raises:
        OSError: naming `folder` (e.g. PermissionError on a read-only folder, ENOSPC on a full disk).
    """
    folder = Path(folder)
    probe = folder / f"{TMP_PREFIX}write-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
    except OSError as e:  # named after the folder the user gave, not the probe file
        raise _renamed(e, folder) from e
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return folder


def _renamed(e: OSError, path: Path) -> OSError:
    return type(e)(e.errno, e.strerror or str(e), str(path))


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ------------------------------------------------------------------------------- errors that name the file


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Within the block, an `OSError` that names no file (a failed `write()` or `close()`) gets `path`."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:  # (an errno-less OSError prints only its message)
            e.filename = str(path)
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)`, raising the real `OSError` (e.g. ENOSPC) naming `path` when a write fails.

    torch reports a failed write as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos":
    writing through a Python file lets us keep the error the operating system gave.
    """
    import torch

    path = Path(path)
    with naming(path), open(path, "wb") as f:
        recorder = _Recorder(f)
        try:
            torch.save(obj, recorder)
        except RuntimeError as e:
            if recorder.error is not None:
                raise recorder.error from e
            raise


def save_safetensors(tensors: Mapping[str, Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, but a failed write raises an `OSError` naming `path`."""
    from safetensors.torch import save as safetensors_bytes

    data = safetensors_bytes(dict(tensors), metadata=metadata)
    with naming(path), open(path, "wb") as f:
        f.write(data)


def describe_os_error(e: OSError) -> str:
    """One line for the user: the cause and the path (a full disk says so in plain words)."""
    if e.errno is None or e.filename is None:
        return str(e)  # the library's own message, which names what it is about
    path = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    if e.errno in _FULL:
        return f"no space left on device while writing {path}"
    return f"{path}: {e.strerror or os.strerror(e.errno)}"


class _Recorder:
    """A file wrapper that remembers the `OSError` a write raised (torch replaces it with its own)."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()
