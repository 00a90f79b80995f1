"""The one exception tree of indexer. The CLI turns any of these into exit code 1 and its message.

Messages are written for the person at the terminal: what went wrong, and what to do about it. They speak
the library's language: an error about one argument carries that argument's name as ``param`` (``top_k``),
and the face renders it as the user typed it (``--top-k`` on the command line, ``top_k`` in a notebook).
"""

from __future__ import annotations


class IndexerError(Exception):
    """Base class of every error indexer raises on purpose."""

    def __init__(self, *args: object, param: "str | None" = None) -> None:
        super().__init__(*args)
        self.param = param  # the library argument the error is about, if one

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.param}: {message}" if self.param else message

    @property
    def message(self) -> str:
        """The message without the argument's name."""
        return super().__str__()


class ConfigError(IndexerError):
    """A setting (an ``INDEXER_*`` environment variable) holds a value that cannot be used."""


class CatalogError(IndexerError):
    """The catalog (SQLite or PostgreSQL) cannot be opened, read or written."""


class SchemaTooNewError(CatalogError):
    """The catalog was written by a newer version of indexer than this one."""


class DiskFullError(CatalogError):
    """A write failed because the disk is full; what was committed before is intact."""


class IndexBusyError(IndexerError):
    """Another process is ingesting into the same index."""


class MissingExtraError(IndexerError):
    """A feature needs an optional dependency that is not installed (the message names the extra)."""


class ClusterError(IndexerError):
    """A distributed run cannot start or its cluster failed beyond what retries recover."""


class ModelError(IndexerError):
    """A model cannot be found, downloaded or loaded."""


class ModelMismatchError(ModelError):
    """The index was built with another embedding model than the one asked for."""


class RuntimeUnsupported(ModelError):
    """This model cannot run on OpenVINO here (its tokenizer, or its towers disagree after conversion)."""


class OpenVinoUnavailable(ModelError):
    """No usable converted model: not converted yet, converted by another OpenVINO version, or broken."""


class SourceError(IndexerError):
    """A source to ingest (folder, archive, list) does not exist or cannot be read."""


class DecodeError(IndexerError):
    """One file is not a readable image; carries a short machine-friendly reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class QueryError(IndexerError):
    """A search, classify or eval request is malformed (empty label set, bad weight, unknown file)."""


class EmptyIndexError(IndexerError):
    """The index holds no embedded items yet."""


class HeadError(IndexerError):
    """A zero-shot head cannot be trained, found or used here (unknown name, another model, bad input)."""
