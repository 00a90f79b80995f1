"""A local Ray cluster (``--ray local``) as another user of the machine would try it: a second process
joins it through the GCS port on 127.0.0.1 and tries to read and write the cluster's state; then the
driver is killed with SIGKILL and nothing of the cluster may be left running or listening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray", reason="Ray is not installed (the cluster extra)")

DRIVER = r"""
import os, sys, time
from indexer.distributed.cluster import ray_cluster
with ray_cluster("local", num_cpus=1) as ray:
    @ray.remote
    def where():
        return os.getpid()
    ray.get(where.remote())
    node = ray._private.worker.global_worker.node
    print("GCS", node.gcs_address.rsplit(":", 1)[1], flush=True)
    time.sleep(600)
"""

JOIN = r"""
import sys
from ray._raylet import GcsClient
try:
    client = GcsClient(address="127.0.0.1:" + sys.argv[1])
    client.internal_kv_put(b"planted", b"by a stranger", True, namespace=None, timeout=10)
    keys = client.internal_kv_keys(b"", namespace=None, timeout=10)
except Exception as exc:
    print("REFUSED", type(exc).__name__, str(exc)[:200])
else:
    print("JOINED", len(keys), "keys")
"""


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _listening(processes: list[psutil.Process]) -> list[str]:
    pids = {p.pid for p in processes if p.is_running()}
    return sorted(f"{c.laddr.ip}:{c.laddr.port} pid {c.pid}" for c in psutil.net_connections("tcp")
                  if c.status == psutil.CONN_LISTEN and c.pid in pids)


def test_a_local_cluster_refuses_a_second_process_and_dies_with_its_driver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # A stranger has none of our tokens; nor has the driver a token file (a fresh one is made for it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(Path(__file__).parents[1]))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env)
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline()
        assert line.startswith("GCS "), f"the driver did not start its cluster: {line!r}"
        port = line.split()[1]
        cluster = _tree(driver.pid)
        assert any(p.name() == "gcs_server" for p in cluster)
        print("listening while the cluster runs:", _listening(cluster))

        stranger = subprocess.run([sys.executable, "-c", JOIN, port], capture_output=True, text=True, env=env,
                                  timeout=120)
        assert "REFUSED" in stranger.stdout and "AuthenticationError" in stranger.stdout, stranger.stdout + stranger.stderr
        assert not (home / ".ray" / "auth_token").exists()  # the token never touches a file

        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and (any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in cluster)):
            time.sleep(0.5)
        left = [f"{p.pid} {p.name()}" for p in cluster if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], f"still running 20 s after the driver was killed: {left}; listening: {_listening(cluster)}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
