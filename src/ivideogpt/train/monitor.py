"""Run bookkeeping beside the loop: the `log.jsonl` file and Ctrl-C / SIGTERM turned into a clean stop."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class JsonlLog:
    """Append-only `log.jsonl`: one JSON object per line with "step", "time" and "component/split/metric" keys.

    On resume, lines past the resumed step (written after the last checkpoint of the interrupted run) are
    dropped so the log reads as one run.
    """

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line).get("step", 0) <= keep_until]
            if len(kept) != len(lines):
                path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, values: dict[str, float]) -> None:
        """Append one line: `{"step": step, "time": unix seconds, **values}`."""
        record = {"step": step, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The records of a `log.jsonl`, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


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
