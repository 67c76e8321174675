"""Processes and databases the benchmark scripts and drills share: a free port, gunicorn started
the way ``manage.py serve`` starts it (in its own process group, ready once /healthz answers),
and a fresh PostgreSQL database per run."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(url: str) -> None:
    """Drop (closing its connections) and create the database ``url`` names."""
    import psycopg

    base, name = url.rsplit("/", 1)
    name = name.split("?")[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_gunicorn(port: int, env: dict, workers: int = 2, log=None) -> subprocess.Popen:
    """gunicorn as ``manage.py serve`` starts it, in its own process group; waits for /healthz.
    RuntimeError when it exits or does not answer within 60 s."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "recsite.wsgi:application",
         "--config", "python:recsite.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    stop_group(server)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (gunicorn's arbiter and workers), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
