"""Run bookkeeping beside the loop: the `log.jsonl` file and Ctrl-C / SIGTERM turned into a clean stop."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivideogpt.atomic import naming


class JsonlLog:
    """Append-only `log.jsonl`: a JSON object per line, with "step", "time" and "component/split/metric" keys.

    On resume, lines past the resumed step (written after the last checkpoint of the interrupted run) are
    dropped so the log reads as one run, and so is a half-written last line (the process died mid-write).
    """

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            text = path.read_text()
            records = _parse(path, text)
            kept = [r for r in records if r.get("step", 0) <= keep_until]
            if len(kept) != len(records) or len(records) != len(_lines(text)):
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, values: dict[str, float]) -> None:
        """Append one line: `{"step": step, "time": unix seconds, **values}`."""
        record = {"step": step, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        with naming(self.path), open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The records of a `log.jsonl`, in order (a half-written last line is left out, with a warning)."""
    return _parse(Path(path), Path(path).read_text())


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _parse(path: Path, text: str) -> list[dict[str, Any]]:
    """JSON records, one per line; a broken line raises naming the file and line, except a torn last one."""
    lines = _lines(text)
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                warnings.warn(f"{path}: line {number} is cut short (the run was killed while writing it); "
                              "dropped", stacklevel=3)
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({e}); only a torn last line is "
                             "dropped on resume: repair or delete this one") from e
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object: {line[:80]!r}")  # noqa: TRY004
        records.append(record)
    return records


@dataclass
class StopRequest:
    """Set when a stop signal arrived; the loop checkpoints and stops at the next step boundary."""

    requested: bool = False


@contextlib.contextmanager
def stop_on_signal() -> Iterator[StopRequest]:
    """Within the block, the first Ctrl-C / SIGTERM sets `requested` instead of killing the step.

    A second Ctrl-C interrupts at once (KeyboardInterrupt). Handlers can only be installed from the main
    thread; elsewhere signals keep their default effect. Previous handlers are restored on exit.
    """
    stop = StopRequest()

    def handle(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              "(Ctrl-C again to stop at once)")

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
