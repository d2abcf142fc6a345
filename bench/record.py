"""What every bench writes beside its figures: the command that reproduces them, and the JSON itself.

The JSON is written atomically (`ivideogpt.atomic.atomic_path`): a bench killed while writing leaves the
previous result in place rather than a truncated file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ivideogpt.atomic import atomic_path


def command_line() -> str:
    """The command this bench was started with, runnable from the repository root."""
    return " ".join(["python", *sys.argv])


def write_result(path: Path, result: dict[str, Any], indent: int = 2) -> None:
    """Write `result` as JSON to `path` (its folder created), atomically, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}")
