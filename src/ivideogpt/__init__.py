"""ivideogpt: interactive video world models (iVideoGPT)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__version__ = "0.1.0"


def pretrained_path(name: str = "metaworld64") -> Path:
    """Folder of a world model shipped inside the package; load it with `WorldModel.load(path)`."""
    # files() is a plain folder for a normal (not zipped) install, which pip always makes for this package
    return Path(str(resources.files("ivideogpt") / "pretrained" / name))
