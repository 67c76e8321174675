"""Fault drill: PostgreSQL stops and starts again while the API is under load.

The machine's shared PostgreSQL is left alone: the drill starts a private PostgreSQL 15 cluster
(initdb into a temporary folder, as the ``postgres`` user when we are root, a free port, trust
authentication), sets up a small trained demo shop with a deployed campaign and a feed in it,
and starts gunicorn (production settings, 2 workers, persistent connections with health
checks) and the django-q worker against it. Then:

1. a load of recommendations, related items, feed pages and event batches from client
   threads (10 s timeout per request), plus a page (``/`` with a session cookie, which reads
   the database) and ``/healthz``;
2. **fault**: ``pg_ctl stop -m immediate`` (a crash: connections cut, no clean shutdown) for a
   few seconds under that load, then ``pg_ctl start``;
3. **fault**: with no traffic at all, ``pg_ctl stop -m fast`` and start again, so the web
   workers' idle persistent connections (``CONN_MAX_AGE``) die unnoticed.

Checked: no 500, no failed or hung request; during the outage every API answer is a 503 JSON
error ``database_unavailable`` with ``Retry-After`` and pages give a 503 page; after the restart
everything is answered again within a few seconds with the same gunicorn workers; every event
of every batch that got 200 is in the database, and a batch that got 503 is there entirely or
not at all; the idle dead connections are replaced before use (no 503 at all after restart 2);
the django-q worker runs a task queued after the restart.

Runs from ``make drills`` (RECSITE_DRILLS=1); about two minutes, so the normal test
suite skips it. Needs /usr/lib/postgresql/15/bin (and, as root, the ``postgres`` user).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import servers, soak

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
CLIENT_TIMEOUT = 10.0
RECOVERY_SECONDS = 10.0  # everything answers again within this long after PostgreSQL is back
OUTAGE_SECONDS = 6.0
BATCH = 20

pytestmark = pytest.mark.skipif(
    os.environ.get("RECSITE_DRILLS") != "1",
    reason="a drill (about 2 minutes, its own PostgreSQL): run it with `make drills`",
)


def say(kind: str, text: str) -> None:
    print(f"  [{kind}] {text}", flush=True)


# --- a private PostgreSQL ----------------------------------------------------------------------


class PrivateCluster:
    def __init__(self):
        if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
            pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN}")
        self.run_as: list[str] = []
        self.folder = Path(tempfile.mkdtemp(prefix="recsite-pg-drill-"))
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to run initdb as")
            if not shutil.which("runuser"):
                pytest.skip("running as root and `runuser` is missing")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.folder / "data"
        self.log = self.folder / "postgresql.log"
        self.port = servers.free_port()

    def command(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [*self.run_as, *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def init(self) -> None:
        self.command(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
        )
        self.command(
            str(PG_BIN / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", "-o", options,
        )  # fmt: skip

    def stop(self, mode: str) -> None:
        self.command(str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        import psycopg

        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE recsite_drill")
            version = conn.execute("SHOW server_version").fetchone()[0]
        say("set-up", f"private PostgreSQL {version} on 127.0.0.1:{cluster.port} ({cluster.data})")
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def site(cluster):
    """The shop in the private cluster, gunicorn and the django-q worker running against it."""
    data_dir = Path(tempfile.mkdtemp(prefix="recsite-drill-data-"))
    url = cluster.url("recsite_drill")
    env = soak.server_env(url, str(data_dir))
    started = time.perf_counter()
    prepared = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--prepare-only", "--database-url", url,
         "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if prepared.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"setting up the shop failed:\n{prepared.stderr[-3000:]}")
    shop = json.loads(prepared.stdout.strip().splitlines()[-1])
    say(
        "set-up",
        f"demo shop {soak.SHOP} imported, user-personalization trained and deployed to "
        f"campaign 'default', feed 'home' built ({time.perf_counter() - started:.0f} s)",
    )
    port = servers.free_port()
    web_log = (data_dir / "gunicorn.log").open("w")
    worker_log = (data_dir / "qcluster.log").open("w")
    server = worker = None
    try:
        server = servers.start_gunicorn(port, env, workers=2, log=web_log)
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "INFO"},
            start_new_session=True,
            stdout=worker_log,
            stderr=worker_log,
        )
        say("set-up", f"gunicorn (2 workers {soak.worker_pids(server)}, production settings, "
            f"CONN_MAX_AGE 60 s with health checks) on 127.0.0.1:{port}; django-q worker "
            f"started")  # fmt: skip
        yield {
            "url": url,
            "env": env,
            "port": port,
            "server": server,
            "worker": worker,
            "data_dir": data_dir,
            **shop,
        }
    finally:
        for process in (server, worker):  # SIGTERM to both, then wait for both
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (server, worker):
            if process is not None:
                servers.stop_group(process)
        web_log.close()
        worker_log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- load --------------------------------------------------------------------------------------


@dataclass
class Record:
    kind: str
    began: float
    ended: float
    status: int | None
    body: bytes = b""
    headers: dict | None = None
    marker: str | None = None
    error: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in (self.headers or {}).items() if k.lower() == name), None)


class Load:
    """API client threads plus a page/health prober, recording every request."""

    KINDS = ["recommendations", "event batches", "related items", "feed pages"]

    def __init__(self, site, connections=3, per_connection_rate=8.0):
        self.site = site
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.clients = [
            soak.Client(site["port"], site["key"], site["users"], site["items"], n, BATCH,
                        timeout=CLIENT_TIMEOUT, seed=2)
            for n in range(connections)
        ]  # fmt: skip
        self.threads = [
            threading.Thread(target=self.api_loop, args=(c, per_connection_rate))
            for c in self.clients
        ]
        self.threads.append(threading.Thread(target=self.page_loop))

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def api_loop(self, client: soak.Client, rate: float) -> None:
        n = client.number
        while not self.stop.is_set():
            kind = self.KINDS[n % len(self.KINDS)]
            n += 1
            began = time.time()
            status, details = client.one(kind)
            self.add(
                Record(
                    kind, began, time.time(), status, details.get("payload", b""),
                    details.get("headers"), details.get("marker"), details.get("error"),
                )
            )  # fmt: skip
            time.sleep(max(0.0, 1.0 / rate - (time.time() - began)))
        client.connection.close()

    def page_loop(self) -> None:
        session = "".join(random.choices(string.ascii_lowercase + string.digits, k=32))
        base = f"http://127.0.0.1:{self.site['port']}"
        while not self.stop.is_set():
            for kind, path, headers in (
                ("page", "/", {"Cookie": f"sessionid={session}"}),
                ("healthz", "/healthz", {}),
            ):
                began = time.time()
                self.add(fetch(kind, base + path, headers, began))
            time.sleep(0.25)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(kind: str, url: str, headers: dict, began: float) -> Record:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=CLIENT_TIMEOUT) as r:
            return Record(kind, began, time.time(), r.status, r.read(), dict(r.headers))
    except urllib.error.HTTPError as exc:
        return Record(kind, began, time.time(), exc.code, exc.read(), dict(exc.headers))
    except OSError as exc:
        return Record(kind, began, time.time(), None, error=type(exc).__name__)


def events_in_database(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT session_id, count(*) FROM datasets_interaction "
            "WHERE session_id LIKE 'soak-%%' GROUP BY session_id"
        ).fetchall()
    return dict(rows)


def run_a_task(site, timeout: float = 60.0) -> float:
    """Queue a small task as the web would (django-q's ORM broker) and wait for its result."""
    import psycopg

    began = time.time()
    queued = subprocess.run(
        [sys.executable, "-c",
         "import django; django.setup(); from django_q.tasks import async_task; "
         "print(async_task('math.floor', 2.5))"],
        cwd=ROOT, env=site["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr[-2000:]
    task_id = queued.stdout.strip().splitlines()[-1]
    deadline = time.time() + timeout
    while time.time() < deadline:
        with psycopg.connect(site["url"]) as conn:
            row = conn.execute(
                "SELECT success FROM django_q_task WHERE id = %s", [task_id]
            ).fetchone()
        if row is not None:
            assert row[0] is True, "the task failed"
            return time.time() - began
        time.sleep(0.5)
    worker_log = (site["data_dir"] / "qcluster.log").read_text()[-3000:]
    raise AssertionError(f"the worker did not run a task within {timeout:.0f} s:\n{worker_log}")


def summary(records: list[Record]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        key = f"{r.status or r.error}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} x {status}" for status, n in sorted(counts.items()))


# --- the drill ---------------------------------------------------------------------------------


def test_postgresql_restart_under_load(cluster, site):
    print()
    server, worker = site["server"], site["worker"]
    workers_before = soak.worker_pids(server)
    seconds = run_a_task(site)
    say("set-up", f"the django-q worker ran a queued task in {seconds:.1f} s")

    with Load(site) as load:
        time.sleep(6)
        stop_began = time.time()
        cluster.stop("immediate")
        stopped = time.time()
        say("fault", f"pg_ctl stop -m immediate under load ({stopped - stop_began:.1f} s)")
        time.sleep(OUTAGE_SECONDS)
        start_began = time.time()
        cluster.start()
        started = time.time()
        say("fault", f"PostgreSQL down {start_began - stopped:.1f} s; pg_ctl start took "
            f"{started - start_began:.1f} s (crash recovery)")  # fmt: skip
        time.sleep(RECOVERY_SECONDS + 5)
    records = sorted(load.records, key=lambda r: r.began)
    api = [r for r in records if r.kind in Load.KINDS]
    say("tried", f"{len(records)} requests: {len(api)} API, "
        f"{sum(r.kind == 'page' for r in records)} pages, "
        f"{sum(r.kind == 'healthz' for r in records)} /healthz")  # fmt: skip

    # 1. Never a 500, never a failed or hung request.
    failed = [r for r in records if r.status is None]
    assert not failed, [(r.kind, r.error) for r in failed[:5]]
    slowest = max(r.ended - r.began for r in records)
    assert slowest < CLIENT_TIMEOUT
    assert not [r for r in records if r.status and r.status >= 500 and r.status != 503]
    say("checked", f"no 500, no connection error, no timeout (slowest answer {slowest:.2f} s)")

    # 2. During the outage: clean 503s.
    outage = [r for r in records if r.began >= stopped and r.ended <= start_began]
    outage_api = [r for r in outage if r.kind in Load.KINDS]
    assert len(outage_api) >= 10, "too few requests during the outage to judge"
    assert all(r.status == 503 for r in outage_api), summary(outage_api)
    for r in [r for r in records if r.status == 503 and r.kind in Load.KINDS]:
        assert r.header("content-type") == "application/json", r.headers
        error = json.loads(r.body)["error"]
        assert error["code"] == "database_unavailable" and error["message"], error
        assert int(r.header("retry-after")) > 0
    pages = [r for r in outage if r.kind == "page"]
    assert pages and all(r.status == 503 for r in pages), summary(pages)
    for r in [r for r in records if r.kind == "page" and r.status == 503]:
        assert r.header("content-type").startswith("text/html")
        assert b"The database is unavailable" in r.body and int(r.header("retry-after")) > 0
    health = [r for r in outage if r.kind == "healthz"]
    assert health and all(r.status == 503 for r in health), summary(health)
    say("checked", f"while PostgreSQL was down: API {summary(outage_api)} (JSON "
        f"'database_unavailable' + Retry-After), pages {summary(pages)} (503 page + "
        f"Retry-After), /healthz {summary(health)}")  # fmt: skip

    # 3. Recovery by itself, same gunicorn workers.
    recovered_at = {}
    for kind in [*Load.KINDS, "page", "healthz"]:
        ok = [
            r for r in records if r.kind == kind and r.began >= started and r.status in (200, 302)
        ]
        assert ok, f"no successful {kind} after the restart"
        recovered_at[kind] = ok[0].ended - started
    late = [r for r in records if r.began >= started + RECOVERY_SECONDS]
    assert late and all(r.status in (200, 302) for r in late), summary(late)
    assert soak.worker_pids(server) == workers_before, "gunicorn replaced its workers"
    assert server.poll() is None
    slowest_kind = max(recovered_at, key=recovered_at.get)
    say("checked", f"after the restart every kind was answered again within "
        f"{recovered_at[slowest_kind]:.1f} s (slowest: {slowest_kind}); all "
        f"{len(late)} requests from {RECOVERY_SECONDS:.0f} s on succeeded; same gunicorn "
        f"workers {workers_before}")  # fmt: skip

    # 4. Events: all of every accepted batch, nothing half-written.
    stored = events_in_database(site["url"])
    batches = [r for r in api if r.kind == "event batches"]
    accepted = [r for r in batches if r.status == 200]
    refused = [r for r in batches if r.status != 200]
    for r in accepted:
        assert json.loads(r.body)["accepted"] == BATCH
        assert stored.get(r.marker) == BATCH, (r.marker, stored.get(r.marker))
    partial = [r.marker for r in refused if stored.get(r.marker, 0) not in (0, BATCH)]
    assert not partial, partial
    stored_anyway = [r.marker for r in refused if stored.get(r.marker) == BATCH]
    unknown = set(stored) - {r.marker for r in batches}
    assert not unknown, unknown
    say("checked", f"events: {len(accepted)} batches got 200, all {len(accepted) * BATCH} "
        f"events in the database (lost 0); {len(refused)} got 503, none half-written "
        f"({len(stored_anyway)} of them stored whole: committed as the connection was "
        f"cut)")  # fmt: skip

    # 5. The idle persistent connections die unnoticed: health checks replace them.
    cluster.stop("fast")
    cluster.start()
    say("fault", "no traffic: pg_ctl stop -m fast, pg_ctl start (idle connections now dead)")
    client = soak.Client(site["port"], site["key"], site["users"], site["items"], 99, BATCH,
                         timeout=CLIENT_TIMEOUT)  # fmt: skip
    statuses = [client.one(Load.KINDS[n % 4])[0] for n in range(24)]
    assert statuses == [200] * 24, statuses
    assert soak.worker_pids(server) == workers_before
    say("checked", "24 requests right after that restart: all 200 (CONN_HEALTH_CHECKS replaced "
        "the dead connections before use)")  # fmt: skip

    # 6. The django-q worker.
    alive = worker.poll() is None
    seconds = run_a_task(site)
    assert alive and worker.poll() is None
    log = (site["data_dir"] / "qcluster.log").read_text().splitlines()
    pulls_failed = sum("Failed to pull task from broker" in line for line in log)
    restarted = Counter(
        line.split("reincarnated ", 1)[1].split()[0] for line in log if "reincarnated " in line
    )
    say("checked", f"django-q worker still running; a task queued after the restarts ran in "
        f"{seconds:.1f} s; its log: {pulls_failed} x 'Failed to pull task from broker', and "
        f"its sentinel restarted {dict(restarted)} (process: times)")  # fmt: skip
