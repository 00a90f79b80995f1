"""The ASGI application: routers per resource, the guards every request passes, errors as HTTP 4xx.

Guards, outermost first: metrics (every answer is counted and timed), the security headers of every
answer, the origin guard (a Host that names another site, a cross-site request: see ``origin``), the
token (when the service was started with one), and the body size limit (an upload over
``max_upload_bytes`` is refused with 413 before it is read whole).
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import CatalogError, EmptyIndexError, IndexerError, ModelError
from .metrics import Metrics
from .origin import OriginGuard
from .state import NotFound, Registry, ServiceConfig

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "indexer_token"
OPEN_PATHS = ("/healthz", "/api/healthz")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


async def _send_json(send: Callable, status: int, body: dict, headers: Optional[list] = None) -> None:
    import json

    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is over the service's limit of {self.limit} bytes (--max-upload)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, {"detail": message})
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return event

        async def tracking_send(event: dict) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"detail": message})


# A token travels in a header and a cookie: printable ASCII, none of the characters a cookie cannot hold.
TOKEN_PATTERN = re.compile(r'^[!#-+\--:<-\[\]-~]{1,256}$')


def check_token(token: Optional[str]) -> None:
    """Refuses a token that a cookie or a header cannot carry (spaces, ``;``, ``,``, quotes, non-ASCII)."""
    if token is not None and not TOKEN_PATTERN.match(token):
        raise ValueError("a token is 1 to 256 printable ASCII characters, without spaces, quotes, "
                         "commas, semicolons or backslashes (e.g. openssl rand -hex 16)")


class TokenGuard:
    """With a token, every request but the health check must carry it: ``Authorization: Bearer T``, the
    cookie the web page gets, or ``?token=T`` once (which sets that cookie and redirects to the same
    address without the token, so that it stays in no URL)."""

    def __init__(self, app: ASGIApp, token: Optional[str]) -> None:
        check_token(token)
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.token or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        request = Request(scope)
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        from_query = request.query_params.get("token")
        if from_query and secrets.compare_digest(from_query.encode(), self.token.encode()):
            rest = urlencode([(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                           keep_blank_values=True) if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode("latin-1", "replace")),
                                    (b"set-cookie", cookie.encode()), (b"cache-control", b"no-store"),
                                    (b"content-length", b"0")]})
            return await send({"type": "http.response.body", "body": b""})
        if given and secrets.compare_digest(given.encode(), self.token.encode()):
            return await self.app(scope, receive, send)
        await _send_json(send, 401, {"detail": "this service needs its token: send 'Authorization: Bearer TOKEN', "
                                               "or open /?token=TOKEN once in the browser"},
                         [(b"www-authenticate", b"Bearer")])


# The page runs its own script and styles only, talks to this service only, and is never framed.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# Swagger UI (/docs) and ReDoc load their script and styles from a CDN, as FastAPI serves them.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")


class SecurityHeaders:
    """Every answer: no MIME sniffing, no framing, no referrer (a ``?token=`` URL must not leak), and the
    page's content security policy unless the route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        docs = scope["path"] in DOCS_PATHS

        async def with_headers(event: dict) -> None:
            if event["type"] == "http.response.start":
                headers = list(event.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer")]
                if not docs:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                headers += [(name, value) for name, value in extra if name not in names]
                event = {**event, "headers": headers}
            await send(event)

        await self.app(scope, receive, with_headers)


# Methods counted by name; any other (a client may send any token) is counted as "other", so that no
# client can grow the metrics without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Measure:
    """Counts and times every answer by route template (not by raw path: ids would explode the series),
    method (the standard ones, else "other") and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def tracking_send(event: dict) -> None:
            nonlocal status
            if event["type"] == "http.response.start":
                status = event["status"]
            await send(event)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static/") else "other")
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.count("indexer_http_requests_total", "HTTP requests answered.", route=template,
                               method=method, status=str(status))
            self.metrics.observe("indexer_http_request_seconds", "Time to answer an HTTP request.",
                                 time.perf_counter() - started, route=template)


def _error(status: int) -> Callable[[Request, Exception], JSONResponse]:
    def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)
    return handler


def _indexer_error(_request: Request, exc: Exception) -> JSONResponse:
    status = 503 if isinstance(exc, (CatalogError, ModelError)) else 409 if isinstance(exc, EmptyIndexError) else 400
    return JSONResponse({"detail": str(exc)}, status_code=status)


def create_app(config: ServiceConfig, registry: Optional[Registry] = None) -> FastAPI:
    """The service over ``config.indexes`` (opened now; closed when the app shuts down)."""
    from contextlib import asynccontextmanager

    from .routes import audit, classify, clip, info, items, search

    registry = registry or Registry(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        registry.close()

    app = FastAPI(
        title="indexer", version=__version__, lifespan=lifespan,
        description="Zero-shot image search and classification over an indexer index. The native API is "
                    "under /api/; /knn-service, /metadata and /indices-list answer clip-retrieval's client.",
    )
    app.state.registry = registry
    app.state.config = config
    app.state.metrics = Metrics()
    app.add_exception_handler(NotFound, _error(404))
    app.add_exception_handler(IndexerError, _indexer_error)
    for module in (clip, search, classify, items, info, audit):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    # Added last = run first: measure everything, add the security headers, refuse other sites, then
    # check the token, then the body size.
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.add_middleware(TokenGuard, token=config.token)
    app.add_middleware(OriginGuard, bound_host=config.host, allowed_hosts=config.allowed_hosts, open_paths=OPEN_PATHS)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Measure, metrics=app.state.metrics)
    return app
