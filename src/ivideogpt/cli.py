"""The `ivideogpt` command line: a thin layer that parses a typed config and calls one library function.

Commands live in one registry. Training commands accept `--config PRESET_OR_YAML`: the preset fills the
dataclass first, then any other flag on the command line overrides it (`--train.steps 500`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

import tyro

from ivideogpt.config import ConfigError, load_yaml, merge


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # words after `ivideogpt`, e.g. ("data", "info")
    help: str  # one line for `ivideogpt --help`
    config: type  # dataclass parsed from the command line
    run: Callable[[Any], Any]  # library function that does the work


GROUP_HELP = {
    "collect": "Collect episodes from a simulator.",
    "import": "Import episodes from files you bring.",
    "data": "Inspect episode datasets.",
}


def _commands() -> list[Command]:
    # Imported here so `ivideogpt --help` and each command pay only for what exists in this file's list.
    from ivideogpt.data.metaworld import MetaworldCollectConfig, collect_metaworld
    from ivideogpt.data.preview import PreviewConfig, write_preview
    from ivideogpt.data.store import InfoConfig, print_info
    from ivideogpt.data.videos import VideoImportConfig, import_videos

    return [
        Command(("collect", "metaworld"), "Record Meta-World expert episodes rendered in MuJoCo.",
                MetaworldCollectConfig, collect_metaworld),
        Command(("import", "videos"), "Turn a folder of videos or frame folders into an action-free dataset.",
                VideoImportConfig, import_videos),
        Command(("data", "info"), "Print a summary of a dataset folder.", InfoConfig, print_info),
        Command(("data", "preview"), "Write a GIF/MP4 grid of a few episodes.", PreviewConfig, write_preview),
    ]


def _match(commands: list[Command], argv: Sequence[str]) -> Command | None:
    for command in sorted(commands, key=lambda c: -len(c.path)):
        if tuple(argv[: len(command.path)]) == command.path:
            return command
    return None


def _command_tree(commands: list[Command]) -> Any:
    """A tyro Union type mirroring the command tree, used for the top-level help and errors."""
    groups: dict[str, list[Command]] = {}
    for command in commands:
        groups.setdefault(command.path[0], []).append(command)
    options = []
    for name, members in groups.items():
        if len(members) == 1 and len(members[0].path) == 1:
            only = members[0]
            options.append(Annotated[only.config, tyro.conf.subcommand(name, description=only.help)])
            continue
        children = tuple(
            Annotated[m.config, tyro.conf.subcommand(m.path[1], description=m.help)] for m in members
        )
        options.append(Annotated[Union[children], tyro.conf.subcommand(name, description=GROUP_HELP[name])])
    return Union[tuple(options)]


def _preset_default(command: Command, args: Sequence[str]) -> Any:
    """The command's config with the `--config` preset applied, or None when none is given."""
    for i, arg in enumerate(args):
        name = None
        if arg == "--config" and i + 1 < len(args):
            name = args[i + 1]
        elif arg.startswith("--config="):
            name = arg.split("=", 1)[1]
        if name is not None:
            preset = load_yaml(name)
            preset["config"] = name
            return merge(command.config(), preset)
    return None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    command = _match(commands, argv)
    if command is None:
        tyro.cli(_command_tree(commands), args=argv, prog="ivideogpt",
                 description="Interactive video world models (iVideoGPT).")
        raise SystemExit(2)  # tyro exits on --help and on errors; a bare parse without a command is an error
    rest = argv[len(command.path):]
    prog = "ivideogpt " + " ".join(command.path)
    try:
        default = _preset_default(command, rest)
        config = tyro.cli(command.config, args=rest, default=default, prog=prog, description=command.help)
        command.run(config)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as error:
        if os.environ.get("IVIDEOGPT_DEBUG"):
            raise
        print(f"ivideogpt {' '.join(command.path)}: error: {error}", file=sys.stderr)
        print("(set IVIDEOGPT_DEBUG=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None
