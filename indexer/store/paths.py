"""Path filters and path scopes as the catalog applies them: plain functions, no database."""

from __future__ import annotations

import fnmatch
import os
from typing import Optional


def has_wildcards(path_filter: str) -> bool:
    return any(ch in path_filter for ch in "*?[")


def uri_under(uri: str, prefix: str) -> bool:
    """Whether ``uri`` is the file ``prefix``, below the folder ``prefix``, or a member of the archive ``prefix``."""
    return uri == prefix or uri.startswith(prefix.rstrip(os.sep) + os.sep) or uri.startswith(prefix + "::")


def path_matches(uri: str, path_filter: Optional[str]) -> bool:
    """A path filter as the catalog applies it: a glob when it has wildcards, else a substring."""
    if not path_filter:
        return True
    return fnmatch.fnmatchcase(uri, path_filter) if has_wildcards(path_filter) else path_filter in uri
