"""The real service on a real socket: uvicorn in a thread, bound to 127.0.0.1 on a free port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from indexer.service.app import create_app
from indexer.service.state import ServiceConfig


@contextmanager
def live_server(indexes: dict[str, Path], **options: Any) -> Iterator[str]:
    """Serves ``indexes`` (name -> folder) and yields the base URL; stops the server on exit."""
    app = create_app(ServiceConfig(indexes=indexes, **options))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
