"""What every bench writes beside its figures: the command that reproduces them, and the JSON itself.

The JSON is written atomically (`ivideogpt.atomic.atomic_path`): a bench killed while writing leaves the
previous result in place rather than a truncated file.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
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


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: sampled rollouts in bfloat16 differ between CPUs with and without
    bf16 matrix units (AMX), so results are compared only where these agree."""
    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "platform": platform.platform(),
            "bf16_units": sorted(f for f in flags if f.startswith("amx") or f == "avx512_bf16"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def planning_header(bench: str, cfg: Any, settings: Any, planner: Any, start: float) -> dict[str, Any]:
    """What a planning bench's JSON opens with: its name, command, wall time since `start`, machine, and
    settings (the bench's config `cfg`, the env of the planning `settings`, the `planner` config)."""
    return {
        "bench": bench,
        "command": command_line(),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                     "env": {"size": settings.size, "camera": settings.camera,
                             "action_repeat": settings.action_repeat},
                     "planner": asdict(planner)},
    }
