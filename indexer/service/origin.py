"""The one guard against other web sites: what a page on another origin can make a browser send.

- **DNS rebinding**: a page on ``evil.example`` whose name is made to resolve to 127.0.0.1 reaches the
  service with ``Host: evil.example``. Only Host values that name this service are answered: the
  address it listens on, ``localhost``, an IP address (a rebound name is never one), and the names given
  with ``--allow-host`` (a proxy's public name); ``--allow-host '*'`` turns the check off.
- **Cross-site requests** (CSRF and work done for another site): a browser says where a request comes
  from (``Sec-Fetch-Site``, and ``Origin`` on a POST). A request from another site is refused, except a
  top-level navigation (a link to the page or a picture, followed by the user). A client that is no
  browser sends neither header and is let through: clip-retrieval's ``ClipClient`` posts JSON with no
  content type and no ``Origin``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Awaitable, Callable, Iterable, Optional
from urllib.parse import urlsplit

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_HOST = "*"


def host_name(value: str) -> str:
    """The name in a Host header or an origin's authority, without its port, lower case: ``[::1]:80``
    -> ``::1``, ``Photos.Example.:8080`` -> ``photos.example``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class OriginGuard:
    """Refuses requests with a Host that names another site, and cross-site requests (see the module)."""

    def __init__(self, app: ASGIApp, bound_host: str, allowed_hosts: Iterable[str] = (),
                 open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        allowed = {host_name(name) for name in allowed_hosts}
        self.any_host = ANY_HOST in allowed
        self.hosts = frozenset(allowed | {"localhost", host_name(bound_host)})
        self.open_paths = open_paths

    def host_allowed(self, host: Optional[str]) -> bool:
        if host is None or self.any_host:
            return True  # HTTP/1.0 without a Host: no browser sends that
        name = host_name(host)
        return name in self.hosts or _is_ip(name)

    def cross_site(self, method: str, headers: dict[bytes, bytes], host: Optional[str]) -> Optional[str]:
        """Why the request is refused as cross-site, or None."""
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site"):
            navigation = (headers.get(b"sec-fetch-mode", b"") == b"navigate"
                          and headers.get(b"sec-fetch-dest", b"document") == b"document")
            if method in SAFE_METHODS and navigation:
                return None  # the user followed a link: nothing runs but what they asked to see
            return f"a {site} request (from another web site)"
        origin = headers.get(b"origin")
        if origin is not None and method not in SAFE_METHODS:
            text = origin.decode("latin-1")
            if text == "null":
                return "a request from an opaque origin (a sandboxed frame or a local file)"
            authority = urlsplit(text).netloc.lower()
            if host is None or authority != host.strip().lower():
                return f"a request from another origin ({text})"
        return None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        raw_host = headers.get(b"host")
        host = raw_host.decode("latin-1") if raw_host is not None else None
        if not self.host_allowed(host):
            return await _refuse(send, 403, f"this service does not answer to the name {host_name(host or '')!r} "
                                            "(a web page may have rebound that name to this machine); "
                                            "start it with --allow-host NAME to serve it under that name")
        if scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        reason = self.cross_site(scope["method"], headers, host)
        if reason is not None:
            return await _refuse(send, 403, f"refused {reason}: this service answers its own page and clients "
                                            "that are not browsers")
        await self.app(scope, receive, send)


async def _refuse(send: Callable, status: int, detail: str) -> None:
    import json

    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": payload})
