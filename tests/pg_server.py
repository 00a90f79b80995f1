"""A throwaway PostgreSQL server for the tests (Debian's postgresql packages), and a fresh database
per test on it.

``INDEXER_TEST_PG_URL`` (a SQLAlchemy URL whose role may create databases) is used as is when set;
otherwise ``initdb`` + ``pg_ctl`` start a private server in a fresh folder under /tmp, unix socket only,
without fsync, stopped and deleted at the end of the session. As root the server runs as the
``postgres`` user (PostgreSQL refuses root), which is why the folder is under /tmp, not tmp_path.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from typing import Iterator

ENV_URL = "INDEXER_TEST_PG_URL"


class ServerUnavailable(Exception):
    """No server can be started here (no binaries, no user to run them as): the tests skip, saying why."""


def server_bindir() -> str:
    candidates = [os.environ["PG_BINDIR"]] if os.environ.get("PG_BINDIR") else []
    # Debian keeps the server programs off PATH, under one folder per major version: newest first.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    if shutil.which("initdb"):
        candidates.append(os.path.dirname(os.path.realpath(shutil.which("initdb"))))
    for folder in candidates:
        if all(os.access(os.path.join(folder, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "psql")):
            return folder
    raise ServerUnavailable("PostgreSQL server programs (initdb, pg_ctl) not found: apt-get install postgresql, "
                            f"or set {ENV_URL}")


@contextmanager
def temporary_server(user: str = "indexer", database: str = "indexer_test") -> Iterator[str]:
    """Starts a private server; yields the SQLAlchemy URL of ``database`` owned by ``user``."""
    bindir = server_bindir()
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root with no 'postgres' user to run the server as") from None
        prefix = ["runuser", "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="indexer-pg-", dir="/tmp")
    data, socket_dir, log = (os.path.join(base, name) for name in ("data", "sock", "server.log"))
    os.mkdir(socket_dir)
    if owner is not None:
        for folder in (base, socket_dir):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    port = 5400 + os.getpid() % 500  # names the socket file in the private folder; no TCP listener
    env = dict(os.environ, LC_ALL="C", LANG="C")

    def run(*command: str) -> None:
        done = subprocess.run(prefix + list(command), env=env, cwd=base, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr or done.stdout}\n{tail}")

    started = False
    try:
        run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions")
        run(f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
            f"-k {socket_dir} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200", "start")
        started = True
        psql = [f"{bindir}/psql", "-h", socket_dir, "-p", str(port), "-U", "postgres", "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-qAt"]
        run(*psql, "-c", f'CREATE ROLE "{user}" LOGIN CREATEDB')
        run(*psql, "-c", f'CREATE DATABASE "{database}" OWNER "{user}"')
        yield f"postgresql+psycopg://{user}@/{database}?host={socket_dir}&port={port}"
    finally:
        if started:
            subprocess.run(prefix + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], env=env,
                           cwd=base, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "t_" + uuid.uuid4().hex[:12]
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
