"""The ``indexer`` command: the face of the library. Each command parses, makes one library call, formats.

One module per command group (``ingest``, ``query``, ``audit``, ``heads``, ``info``), shared options and output in
``common``. Command modules are imported when their command runs, so ``indexer status`` pays for
nothing it does not use. Library errors become one line and exit code 1; usage errors exit with 2.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

import click

from .. import __version__
from ..errors import IndexerError
from .common import CONTEXT, safe, setup_logging

# command name -> (module, function)
COMMANDS = {
    "ingest": ("ingest", "ingest"),
    "sync": ("ingest", "sync"),
    "search": ("query", "search"),
    "classify": ("query", "classify"),
    "eval": ("query", "evaluate_command"),
    "audit": ("audit", "audit"),
    "heads": ("heads", "heads"),
    "status": ("info", "status"),
    "models": ("info", "models"),
    "demo": ("info", "demo"),
    "serve": ("serve", "serve"),
    "import": ("exchange", "import_command"),
    "export": ("exchange", "export_command"),
}


class IndexerGroup(click.Group):
    """Loads each command's module on first use; turns the library's errors into a one-line message
    and exit code 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name in COMMANDS and name not in self.commands:
            module, function = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(f"{__name__}.{module}"), function), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        setup_logging()
        try:
            return super().invoke(ctx)
        except IndexerError as exc:
            message = f"{flag_of(self, exc.param)}: {exc.message}" if exc.param else str(exc)
            raise click.ClickException(safe(message)) from None


def flag_of(command: click.Command, param: str) -> str:
    """How the command line spells the library argument ``param`` (``top_k`` -> ``--top-k``)."""
    found = [p for p in _params(command) if p.name == param]
    if found and found[0].opts:
        return max(found[0].opts, key=len)
    return "--" + param.replace("_", "-")


def _params(command: click.Command) -> list[click.Parameter]:
    params = list(command.params)
    for sub in getattr(command, "commands", {}).values():
        params += _params(sub)
    return params


@click.group(cls=IndexerGroup, context_settings=CONTEXT)
@click.version_option(version=__version__, message="indexer %(version)s")
def main() -> None:
    """Zero-shot image search and classification for large image collections.

    Embed a collection once with an OpenCLIP model, then search it with text or images and
    classify it into any label set, in seconds, without reading an image again.

    \b
    Quick start (offline, with the bundled model):
      indexer ingest ./photos --index ./photos-index --model tiny-shapes
      indexer search "a red star" --index ./photos-index
      indexer classify --labels "red circle,blue square" --index ./photos-index

    Set INDEXER_INDEX to leave out --index. Every command has --help with an example.
    """
