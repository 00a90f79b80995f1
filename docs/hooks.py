"""MkDocs hooks for the indexer site (named in mkdocs.yml; not a page).

- The ``indexer`` group registers its commands lazily (each module is imported when its command runs), and
  mkdocs-click documents a group's already-registered commands when it has any: so every command is loaded
  here first, and the build fails if the CLI reference would miss one.
- The service's OpenAPI document is written into the site as ``reference/openapi.json`` (built from the
  app itself, so it never drifts), with the version of the code being documented.
"""

from __future__ import annotations

import json
import logging

import click
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.indexer")


def _load_every_command(group: click.Group, ctx: click.Context) -> list[str]:
    names = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            raise RuntimeError(f"the indexer group lists {name!r} but cannot load it")
        names.append(name)
        if isinstance(command, click.Group):
            names += [f"{name} {sub}" for sub in _load_every_command(command, click.Context(command, parent=ctx))]
    return names


def on_config(config, **kwargs):
    from indexer.cli import COMMANDS, main

    names = _load_every_command(main, click.Context(main, info_name="indexer"))
    missing = set(COMMANDS) - set(main.commands)
    if missing:
        raise RuntimeError(f"the CLI reference would miss {sorted(missing)}")
    log.info("CLI reference: %d commands and subcommands", len(names))
    return config


def openapi_document() -> dict:
    from indexer.service.app import create_app
    from indexer.service.state import ServiceConfig

    return create_app(ServiceConfig(indexes={})).openapi()


def on_files(files, config, **kwargs):
    content = json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"
    files.append(File.generated(config, "reference/openapi.json", content=content))
    return files
