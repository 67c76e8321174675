"""Event ingestion: POST /api/v1/events on gunicorn against a real database.

Starts gunicorn (2 sync workers, as `manage.py serve` does) on a free port, posts batches of
events from several client processes over http.client for a fixed time, then checks that
the database holds exactly the events the API said it accepted. Runs the same load against
a baseline app (benchmarks/baseline: same settings, middleware and DRF, one view with a
fixed answer) so the framework's share is visible. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_events.py                 # PostgreSQL
    .venv/bin/python benchmarks/bench_events.py --db sqlite     # a temporary SQLite file

PostgreSQL: DATABASE_URL, default postgres://postgres@127.0.0.1:5432/recsite_bench (created
when missing). The run uses a new project in it and deletes that project afterwards
(--keep keeps it), with the "benchmark" user it creates; nothing else is touched.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/recsite_bench"
BODIES_PER_CLIENT = 64
USERS, ITEMS = 20_000, 5_000


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0


@dataclass
class PhaseResult:
    name: str
    seconds: float
    latencies: list[float]
    accepted: int
    failures: dict[str, int]
    warm_up_accepted: int  # stored before the timed run, so part of the row count
    cpu: dict[str, float]  # CPU seconds used during the timed run, by whom

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0


# --- load generation (runs in client processes; no Django here) ----------------------------


def event_bodies(seed: int, batch: int) -> list[bytes]:
    """Pre-encoded request bodies, so the clients spend little CPU during the run."""
    rng = random.Random(seed)
    now = int(time.time())
    bodies = []
    for _ in range(BODIES_PER_CLIENT):
        events = []
        for _ in range(batch):
            event = {
                "user_id": f"user-{rng.randrange(USERS)}",
                "item_id": f"item-{int(rng.paretovariate(1.2)) % ITEMS}",
                "event_type": rng.choice(("view", "view", "view", "cart", "purchase")),
                "timestamp": now - rng.randrange(86_400),
            }
            if rng.random() < 0.2:  # a feed impression with the recommendation it came from
                event["impression"] = [f"item-{rng.randrange(ITEMS)}" for _ in range(10)]
                event["recommendation_id"] = f"rec-{rng.randrange(10**9)}"
            events.append(event)
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def client_loop(port: int, path: str, key: str, bodies: list[bytes], start: float, stop: float):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    # Keep-alive where the server allows it; gunicorn's sync workers close after each
    # response and http.client then reconnects by itself.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    result = ClientResult()
    time.sleep(max(0.0, start - time.time()))
    cpu_start = time.process_time()
    sent = 0
    while time.time() < stop:
        body = bodies[sent % len(bodies)]
        sent += 1
        began = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            name = type(exc).__name__
            result.failures[name] = result.failures.get(name, 0) + 1
            connection.close()
            continue
        result.latencies.append(time.perf_counter() - began)
        if response.status != 200:
            status = f"HTTP {response.status}"
            result.failures[status] = result.failures.get(status, 0) + 1
            continue
        result.accepted += json.loads(payload)["accepted"]
    connection.close()
    result.cpu_seconds = time.process_time() - cpu_start
    return result


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(app: str, port: int, env: dict) -> subprocess.Popen:
    from recsite.blas import THREAD_ENV_VARS

    server_env = {**env, **dict.fromkeys(THREAD_ENV_VARS, "1"), "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT,
        env=server_env,
    )  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn ({app}) exited with code {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"gunicorn ({app}) did not start within 30 s")


def cpu_seconds(process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


# PostgreSQL's shared background processes (WAL writer, checkpointer, ...) name no database.
POSTGRES_BACKGROUND = re.compile(
    r"^postgres: \S+: (checkpointer|background writer|walwriter|autovacuum launcher"
    r"|logical replication launcher|stats collector|archiver)"
)


def cpu_sample(server: subprocess.Popen, database_name: str | None) -> dict[str, float]:
    """Cumulative CPU seconds of the server, of the benchmark database's backends, of
    PostgreSQL's background processes, and of the whole machine (other people's jobs
    included: the machine may be shared)."""
    gunicorn = psutil.Process(server.pid)
    sample = {
        "server": sum(map(cpu_seconds, [gunicorn, *gunicorn.children(recursive=True)])),
        "database": 0.0,
        "postgres background": 0.0,
    }
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if database_name and f" {database_name} " in title:
            sample["database"] += cpu_seconds(process)
        elif POSTGRES_BACKGROUND.match(title):
            sample["postgres background"] += cpu_seconds(process)
    machine = psutil.cpu_times()
    sample["machine"] = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    return sample


def run_phase(name, app, path, key, args, env) -> PhaseResult:
    port = free_port()
    server = start_gunicorn(app, port, env)
    try:
        warm_up_bodies = event_bodies(seed=0, batch=args.batch)[:2]
        # A second of requests, so both workers have loaded everything before the clock runs.
        warm_up = client_loop(port, path, key, warm_up_bodies, time.time(), time.time() + 1)
        bodies = [event_bodies(seed=n + 1, batch=args.batch) for n in range(args.clients)]
        with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
            start = time.time() + 1.0  # every client starts together
            stop = start + args.seconds
            jobs = [(port, path, key, bodies[n], start, stop) for n in range(args.clients)]
            pending = pool.starmap_async(client_loop, jobs)
            time.sleep(max(0.0, start - time.time()))
            before = cpu_sample(server, args.database_name)
            time.sleep(max(0.0, stop - time.time()))
            after = cpu_sample(server, args.database_name)
            results = pending.get()
    finally:
        server.terminate()
        server.wait(timeout=30)
    cpu = {group: after[group] - before[group] for group in before}
    cpu["clients"] = sum(result.cpu_seconds for result in results)
    cpu["other processes"] = max(0.0, cpu.pop("machine") - sum(cpu.values()))
    failures: dict[str, int] = {}
    for result in results:
        for kind, count in result.failures.items():
            failures[kind] = failures.get(kind, 0) + count
    return PhaseResult(
        name=name,
        seconds=args.seconds,
        latencies=[latency for result in results for latency in result.latencies],
        accepted=sum(result.accepted for result in results),
        failures=failures,
        warm_up_accepted=warm_up.accepted,
        cpu=cpu,
    )


# --- database ------------------------------------------------------------------------------


def prepare_database(db: str) -> tuple[str, Path | None]:
    """The DATABASE_URL to benchmark against (and a temp dir to remove for SQLite)."""
    if db == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="recsite-bench-"))
        return f"sqlite:///{folder / 'bench.sqlite3'}", folder
    import environ
    import psycopg
    from psycopg import sql

    url = os.environ.get("DATABASE_URL", DEFAULT_POSTGRES_URL)
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit(f"--db postgres needs a postgres:// DATABASE_URL, not {url}")
    server = {
        "host": config.get("HOST") or "localhost",
        "port": config.get("PORT") or 5432,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
            name = config["NAME"]
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if exists.fetchone() is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL is not reachable ({exc}); try --db sqlite") from None
    return url, None


def set_up_django(database_url: str):
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_bench_project():
    from django.contrib.auth import get_user_model

    from datasets.services import create_api_key, create_project

    owner, _ = get_user_model().objects.get_or_create(username="benchmark")  # no password
    project = create_project(
        name=f"Event benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}", owner=owner
    )
    _, key = create_api_key(project=project, name="bench_events.py", created_by=owner)
    return project, key, owner


def database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
        cursor.execute("SELECT sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"


# --- report --------------------------------------------------------------------------------


def print_report(args, events: PhaseResult, baseline: PhaseResult, rows: int, database: str):
    print(
        f"\nEvent ingestion: batches of {args.batch} events, gunicorn with 2 sync workers, "
        f"{args.clients} client processes, {args.seconds:g} s per run, {database}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n"
    )
    print(
        "| run | requests/s | events accepted/s | p50 ms | p95 ms | failed "
        "| server CPU ms/request | DB CPU ms/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase, label in (
        (events, "POST /api/v1/events"),
        (baseline, "baseline: fixed DRF answer, no DB"),
    ):
        per_second = f"{phase.accepted / phase.seconds:,.0f}" if phase is events else "–"
        requests = max(phase.requests, 1)
        print(
            f"| {label} | {phase.requests / phase.seconds:,.0f} | {per_second} | "
            f"{phase.percentile(0.5):.1f} | {phase.percentile(0.95):.1f} | "
            f"{sum(phase.failures.values())} | {phase.cpu['server'] / requests * 1000:.1f} | "
            f"{phase.cpu['database'] / requests * 1000:.1f} |"
        )
    accepted = events.accepted + events.warm_up_accepted
    verdict = "equal" if rows == accepted else "MISMATCH"
    print(
        f"\nRows in the database: {rows:,}; events the API accepted: {accepted:,} "
        f"({events.warm_up_accepted:,} of them in the warm-up second) -> {verdict}."
    )
    ratio = events.requests / baseline.requests if baseline.requests else 0
    print(f"The events endpoint served {ratio:.0%} of the baseline's requests per second.")
    available = (os.cpu_count() or 1) * args.seconds
    for phase in (events, baseline):
        use = ", ".join(f"{group} {seconds:.1f}" for group, seconds in phase.cpu.items())
        print(f"CPU seconds during the {phase.name} run (of {available:g} available): {use}.")
        if phase.failures:
            print(f"Failures in the {phase.name} run: {phase.failures}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark project")
    args = parser.parse_args()

    database_url, temp_dir = prepare_database(args.db)
    # PostgreSQL backends show their database in their process title; SQLite has none.
    args.database_name = None if temp_dir else database_url.rsplit("/", 1)[-1].split("?")[0]
    set_up_django(database_url)
    from django.db import connections

    from datasets.models import Interaction

    project, key, owner = create_bench_project()
    database = database_version()
    connections.close_all()  # the servers and clients start in other processes
    env = {**os.environ, "DATABASE_URL": database_url}
    try:
        events = run_phase("events", "recsite.wsgi:application", "/api/v1/events", key, args, env)
        baseline = run_phase(
            "baseline", "benchmarks.baseline.wsgi:application", "/baseline", "", args, env
        )
        rows = Interaction.objects.filter(project=project).count()
        print_report(args, events, baseline, rows, database)
    finally:
        if not args.keep:
            project.delete()
            if not owner.projects.exists():  # kept by an earlier --keep run otherwise
                owner.delete()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
    if rows != events.accepted + events.warm_up_accepted or events.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
