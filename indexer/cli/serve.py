"""``indexer serve``: the HTTP service and web page over one or more indexes."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Optional

import click

from ..store.files import CATALOG_FILE
from .common import CONTEXT, err


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_indexes(values: tuple[str, ...], catalog: Optional[str] = None) -> dict[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after its folder) -> {name: folder}; names must differ. With a
    ``catalog`` URL (one index only) the folder holds the vectors, not the catalog."""
    if catalog and len(values) != 1:
        raise click.BadParameter("--catalog URL serves one index: give a single --index", param_hint="--catalog")
    out: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or "/" in name:
            name, folder = Path(value).expanduser().resolve().name, value
        path = Path(folder).expanduser()
        if name in out:
            raise click.BadParameter(f"two indexes named {name!r}; name them as NAME=DIR", param_hint="--index")
        if catalog:
            if not path.is_dir():
                raise click.BadParameter(f"no index folder {path}; build one with `indexer ingest --catalog URL`",
                                         param_hint="--index")
        elif not (path / CATALOG_FILE).is_file():
            raise click.BadParameter(f"no index at {path} (no {CATALOG_FILE}); build one with `indexer ingest`",
                                     param_hint="--index")
        out[name] = path
    return out


@click.command(context_settings=CONTEXT)
@click.option("--index", "index_dirs", multiple=True, required=True, envvar="INDEXER_INDEX",
              help="An index folder, or NAME=DIR; repeat it to serve several (named after their folders by "
                   "default). Also from $INDEXER_INDEX.")
@click.option("--catalog", metavar="URL", envvar="INDEXER_CATALOG",
              help="The index's catalog is in this database (postgresql+psycopg://user@host/db), not in its "
                   "folder; one --index only. Also from $INDEXER_CATALOG.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token (or --no-auth).")
@click.option("--port", default=1234, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--token", envvar="INDEXER_TOKEN", help="Require this token (Authorization: Bearer TOKEN, or "
                                                      "/?token=TOKEN once in a browser). Also from $INDEXER_TOKEN.")
@click.option("--no-auth", is_flag=True, help="Serve a non-loopback address without a token (anyone who can reach "
                                              "it can query the index and see its pictures).")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Answer requests for this host name too (the name a reverse proxy serves it under); repeat it "
                   "for several. Without it only the listening address, localhost and IP addresses are answered "
                   "(a web page cannot rebind its own name to this service). '*' answers any name.")
@click.option("--allow-ingest", is_flag=True, help="Allow POST /api/ingest (ingest the index's sources again). "
                                                   "Without it, no request changes the index.")
@click.option("--allow-decisions", is_flag=True, help="Allow POST /api/audit/decisions (a reviewer's decisions on "
                                                      "audit findings, recorded in the catalog; the page's audit view).")
@click.option("--max-upload", default="20MB", show_default=True, help="Largest request body (an uploaded picture).")
@click.option("--device", envvar="INDEXER_DEVICE", help="cuda, mps or cpu for the model. Default: the best available.")
def serve(index_dirs: tuple[str, ...], catalog: Optional[str], host: str, port: int, token: Optional[str], no_auth: bool,
          allowed_hosts: tuple[str, ...], allow_ingest: bool, allow_decisions: bool, max_upload: str,
          device: Optional[str]) -> None:
    """Serve indexes over HTTP: a web page for ad-hoc queries at /, a JSON API under /api/ (docs at
    /docs), and clip-retrieval's API (/knn-service, /metadata, /indices-list) for its ClipClient.

    The model is loaded at the first query that needs it and the vectors stay in memory; an ingest
    running beside the service is picked up as it commits. Read-only unless --allow-ingest (or --allow-decisions, for audit decisions only).

    \b
    Examples:
      indexer serve --index ./photos-index
      indexer serve --index photos=./photos-index --index web=./web-index --port 8080
      indexer serve --index ./photos-index --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from ..config import parse_size
    from ..service import require

    require()
    from ..service.app import check_token

    try:
        check_token(token)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from None
    if not _loopback(host) and not token and not no_auth:
        raise click.UsageError(f"--host {host} is reachable from other machines: give --token TOKEN "
                               f"(e.g. --token {secrets.token_hex(16)}), or --no-auth to serve it open")
    try:
        limit = parse_size(max_upload)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-upload") from None
    import uvicorn

    from ..service.app import create_app
    from ..service.state import ServiceConfig

    config = ServiceConfig(indexes=parse_indexes(index_dirs, catalog), catalog=catalog, host=host, port=port, token=token,
                           allowed_hosts=allowed_hosts, allow_ingest=allow_ingest, allow_decisions=allow_decisions,
                           max_upload_bytes=limit, device=device)
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    err(f"serving {', '.join(f'{n} ({p})' for n, p in config.indexes.items())} on http://{shown}:{port}/ "
        f"(API docs at /docs{'; token required' if token else ''}{'; ingest allowed' if allow_ingest else ''}"
        f"{'; audit decisions allowed' if allow_decisions else ''})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
