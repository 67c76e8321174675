"""Soak: minutes of mixed reads and event writes on gunicorn; no errors, bounded memory, no loss.

    make soak                                        # 5 minutes
    .venv/bin/python benchmarks/soak.py --minutes 1  # shorter

What it does:

1. drops and re-creates its own PostgreSQL database (``SOAK_DATABASE_URL``, default
   postgres://postgres@127.0.0.1:5432/recsite_soak; nothing else is touched), with
   ``DATA_DIR`` in a temporary folder; imports a small demo shop (600 users, 400 items,
   40,000 events), trains ``user-personalization``, deploys it to campaign ``default`` and
   builds feed ``home`` (3 campaign + 1 trending + 1 popular slots);
2. starts gunicorn on 127.0.0.1 with recsite's production settings (``recsite.settings``,
   ``DEBUG=False``, 2 sync workers, as ``manage.py serve`` does);
3. runs a bounded load (``--rate`` requests/s in all, spread over ``--connections`` client
   threads, each request with a 30 s timeout) for ``--minutes``: 40 % recommendations, 20 %
   related items, 20 % feed pages (page 2 through ``next_cursor`` every other time), 20 %
   event batches (``--batch`` events, each batch marked with its own ``session_id``);
4. samples the RSS of each gunicorn worker (psutil) every ``--sample-seconds``; the warm-up is
   page 1 of the feed for ``--fill-feed-sessions`` (4,096) new users before the timed load
   (the feed endpoint keeps scroll sessions in a per-process cache that grows to 2,048
   entries by design; filled first, it is not mistaken for a leak), then the first
   ``--warm-up`` seconds (60) of the timed load;
5. afterwards counts the events in the database by their batch marker.

Prints a table and exits non-zero when any request failed, a worker was replaced, events are
missing (or present from a batch that was not accepted), or a worker's RSS grew by more than
the bound after warm-up: 10 % of its RSS after warm-up, at least 16 MiB. Why that bound: a
worker's RSS is dominated by Python, numpy and the model it loaded (~150-250 MiB); allocator
noise and caches filling up stay within a few MiB once warmed up, while a leak of even 2 KB
per request, over the ~7,500 requests each worker serves in the default 5 minutes, is 15 MiB.

``prepare_shop`` and ``server_env`` (with ``benchmarks/servers.py``) are also used by the
PostgreSQL restart drill (tests/drills/test_database_restart.py), which runs this file with
``--prepare-only`` to set up its own private database.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.servers import free_port, recreate_database, start_gunicorn, stop_group  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/recsite_soak"
SHOP = {"n_users": 600, "n_items": 400, "n_interactions": 40_000, "seed": 7}
KINDS = {"recommendations": 0.4, "related items": 0.2, "feed pages": 0.2, "event batches": 0.2}
MIB = 2**20


# --- set-up (runs Django in this process) ------------------------------------------------------


def prepare_shop(database_url: str, data_dir: str) -> dict:
    """Migrate, import the small demo shop, train, deploy, build a feed; returns what clients
    need: the API key, user and item ids."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DATA_DIR"] = data_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "recsite.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from datasets import imports
    from datasets.ingest.demo import generate_demo_shop
    from datasets.models import EndUser, Item
    from datasets.services import create_api_key, create_project
    from feeds.feeds import create_feed
    from models_app import services

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create(username="soak")
    project = create_project(name="Soak", owner=owner)
    with tempfile.TemporaryDirectory() as tmp:
        files = generate_demo_shop(tmp, **SHOP)["files"]
        for kind in ("items", "users", "interactions"):
            job = imports.import_file(project=project, kind=kind, path=files[kind])
            if job.status != "succeeded":
                raise SystemExit(f"{kind} import failed: {job.error}")
    solution = services.create_solution(project=project, recipe="user-personalization")
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    if run.status != "succeeded":
        raise SystemExit(f"training failed: {run.error}")
    services.create_campaign(project=project, name="default", version=run.version)
    create_feed(
        project=project,
        name="home",
        slots=[("campaign:default", 3), ("trending", 1), ("popular", 1)],
        fallback_source="popular",
    )
    _, key = create_api_key(project=project, name="soak.py", created_by=owner)
    users = list(EndUser.objects.filter(project=project).values_list("external_id", flat=True))
    items = list(Item.objects.filter(project=project).values_list("external_id", flat=True))
    result = {"key": key, "users": users, "items": items, "project": project.pk}
    connections.close_all()
    return result


# --- processes ---------------------------------------------------------------------------------


def server_env(database_url: str, data_dir: str, **extra: str) -> dict:
    threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        **os.environ,
        **dict.fromkeys(threads, "1"),
        "DATABASE_URL": database_url,
        "DATA_DIR": data_dir,
        "DJANGO_SETTINGS_MODULE": "recsite.settings",
        "DEBUG": "False",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def worker_pids(server: subprocess.Popen) -> list[int]:
    import psutil

    return sorted(child.pid for child in psutil.Process(server.pid).children())


# --- load --------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    accepted_events: int = 0
    accepted_batches: set[str] = field(default_factory=set)
    failed_batches: set[str] = field(default_factory=set)

    def error(self, kind: str, what: str) -> None:
        self.errors[kind][what] = self.errors[kind].get(what, 0) + 1

    def merge(self, other: Tally) -> None:
        for kind, values in other.latencies.items():
            self.latencies[kind].extend(values)
        for kind, errors in other.errors.items():
            for what, count in errors.items():
                self.errors[kind][what] = self.errors[kind].get(what, 0) + count
        self.accepted_events += other.accepted_events
        self.accepted_batches |= other.accepted_batches
        self.failed_batches |= other.failed_batches


class Client:
    """One client thread: a keep-alive connection, requests at a fixed pace."""

    def __init__(self, port, key, users, items, number, batch, timeout=30.0, seed=0):
        self.port, self.key, self.users, self.items = port, key, users, items
        self.number, self.batch, self.timeout = number, batch, timeout
        self.rng = random.Random(seed * 1000 + number)
        self.tally = Tally()
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.cursor: tuple[str, str] | None = None
        self.sent_batches = 0

    def request(self, method: str, path: str, body: bytes | None = None):
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            raise
        return response, payload

    def one(self, kind: str) -> tuple[int | None, dict]:
        """Send one request of ``kind``; returns (status or None, details)."""
        user = self.rng.choice(self.users)
        body, marker = None, None
        if kind == "recommendations":
            path = "/api/v1/recommendations?" + urllib.parse.urlencode(
                {"user_id": user, "num_results": 20}
            )
        elif kind == "related items":
            item = urllib.parse.quote(self.rng.choice(self.items), safe="")
            path = f"/api/v1/items/{item}/related?num_results=10"
        elif kind == "feed pages":
            query = {"user_id": user, "page_size": 10}
            if self.cursor:  # page 2 of the previous feed page, for the same user
                (query["user_id"], query["cursor"]), self.cursor = self.cursor, None
            path = "/api/v1/feeds/home?" + urllib.parse.urlencode(query)
        else:
            self.sent_batches += 1
            marker = f"soak-{self.number}-{self.sent_batches}"
            now = int(time.time())
            events = [
                {
                    "user_id": self.rng.choice(self.users),
                    "item_id": self.rng.choice(self.items),
                    "event_type": self.rng.choice(("view", "view", "cart", "purchase")),
                    "timestamp": now,
                    "session_id": marker,
                }
                for _ in range(self.batch)
            ]
            body = json.dumps({"events": events}).encode()
            path = "/api/v1/events"
        began = time.perf_counter()
        try:
            response, payload = self.request("POST" if body else "GET", path, body)
        except (OSError, http.client.HTTPException) as exc:
            self.tally.error(kind, type(exc).__name__)
            if marker:
                self.tally.failed_batches.add(marker)
            return None, {"error": type(exc).__name__, "marker": marker}
        self.tally.latencies[kind].append(time.perf_counter() - began)
        details = {"marker": marker, "payload": payload, "headers": dict(response.getheaders())}
        if response.status != 200:
            self.tally.error(kind, f"HTTP {response.status}")
            if marker:
                self.tally.failed_batches.add(marker)
            return response.status, details
        answer = json.loads(payload)
        if kind == "feed pages" and self.rng.random() < 0.5:
            cursor = answer.get("next_cursor")
            self.cursor = (parse_qs_user(path), cursor) if cursor else None
        if marker:
            self.tally.accepted_events += answer["accepted"]
            self.tally.accepted_batches.add(marker)
        return 200, details

    def run(self, rate: float, stop: float, mix: dict[str, float] | None = None) -> None:
        interval = 1.0 / rate
        next_at = time.time() + self.rng.random() * interval
        mix = mix or KINDS
        kinds, weights = list(mix), list(mix.values())
        while True:
            now = time.time()
            if now >= stop:
                break
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            self.one(self.rng.choices(kinds, weights)[0])
        self.connection.close()


def fill_feed_sessions(port: int, key: str, count: int, connections: int) -> dict[str, int]:
    """Page 1 of feed 'home' for ``count`` users never seen before, from ``connections``
    threads. The feed endpoint keeps each scroll session, and the lists it was built from,
    in a per-process cache (feeds.feeds: up to 2,048 entries, 30 minutes); filling it during
    the warm-up keeps a cache that is meant to grow to its limit out of the growth measured
    after warm-up."""
    numbers = iter(range(count))
    lock = threading.Lock()
    errors: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def loop():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                break
            query = urllib.parse.urlencode({"user_id": f"soak-new-{n}", "page_size": 10})
            try:
                connection.request("GET", f"/api/v1/feeds/home?{query}", headers=headers)
                response = connection.getresponse()
                response.read()
                failure = None if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                failure = type(exc).__name__
            if failure:
                with lock:
                    errors[failure] = errors.get(failure, 0) + 1
        connection.close()

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# --- soak --------------------------------------------------------------------------------------


def rss_sampler(pids: list[int], every: float, stop: threading.Event, samples: list) -> None:
    import psutil

    processes = {pid: psutil.Process(pid) for pid in pids}
    while True:
        row = {"t": time.time()}
        for pid, process in processes.items():
            try:
                row[pid] = process.memory_info().rss
            except psutil.NoSuchProcess:
                row[pid] = None
        samples.append(row)
        if stop.wait(every):
            break


def parse_qs_user(path: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["user_id"][0]


def percentile_ms(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0


def count_events(database_url: str) -> dict[str, int]:
    """Rows per batch marker, straight from the database."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT session_id, count(*) FROM datasets_interaction "
            "WHERE session_id LIKE 'soak-%%' GROUP BY session_id"
        ).fetchall()
    return dict(rows)


def soak(args) -> bool:
    data_dir = tempfile.mkdtemp(prefix="recsite-soak-")
    server = None
    try:
        recreate_database(args.database_url)
        started = time.perf_counter()
        shop = prepare_shop(args.database_url, data_dir)
        print(f"set-up: demo shop {SHOP}, trained and deployed in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        extra = {}
        if args.rate * 60 > 0.9 * 6000:  # the default API_THROTTLE_RATE would answer 429
            extra["API_THROTTLE_RATE"] = "off"
        port = free_port()
        server = start_gunicorn(port, server_env(args.database_url, data_dir, **extra))
        pids = worker_pids(server)
        samples: list[dict] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=rss_sampler, args=(pids, args.sample_seconds, stop_sampling, samples)
        )
        sampler.start()
        if args.fill_feed_sessions:
            began = time.perf_counter()
            fill_errors = fill_feed_sessions(
                port, shop["key"], args.fill_feed_sessions, args.connections
            )
            print(f"warm-up: page 1 of feed 'home' for {args.fill_feed_sessions:,} new users "
                  f"in {time.perf_counter() - began:.0f} s, filling the feed session caches; "
                  f"errors: {fill_errors or 0}", flush=True)  # fmt: skip
        seconds = args.minutes * 60
        load_started = time.time()
        stop = load_started + seconds
        warm_until = load_started + min(args.warm_up, seconds / 3)
        clients = [
            Client(port, shop["key"], shop["users"], shop["items"], n, args.batch, seed=args.seed)
            for n in range(args.connections)
        ]
        threads = [
            threading.Thread(target=c.run, args=(args.rate / args.connections, stop, args.mix))
            for c in clients
        ]
        print(f"load: {args.rate:g} requests/s over {args.connections} connections for "
              f"{args.minutes:g} min; gunicorn workers {pids}", flush=True)  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - load_started
        stop_sampling.set()
        sampler.join()
        pids_after = worker_pids(server)
        load_average = os.getloadavg()
        stop_group(server)
        server = None
        tally = Tally()
        for client in clients:
            tally.merge(client.tally)
        for what, count in (fill_errors if args.fill_feed_sessions else {}).items():
            tally.errors["feed pages"][f"{what} (warm-up)"] = count
        in_database = count_events(args.database_url)
        return report(args, tally, samples, pids, pids_after, warm_until, in_database,
                      elapsed, load_average)  # fmt: skip
    finally:
        if server is not None:
            stop_group(server)
        shutil.rmtree(data_dir, ignore_errors=True)


def report(args, tally, samples, pids, pids_after, warm_until, in_database, elapsed, load):
    ok = True
    print(
        f"\nSoak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {elapsed / 60:.1f} min, "
        f"{args.rate:g} requests/s requested over {args.connections} connections, gunicorn 2 "
        f"sync workers, production settings, PostgreSQL; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min); Python "
        f"{platform.python_version()}\n"
    )
    print("| requests | served | per second | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    total = 0
    for kind in KINDS:
        latencies = tally.latencies.get(kind, [])
        errors = sum(tally.errors.get(kind, {}).values())
        total += len(latencies)
        print(f"| {kind} | {len(latencies):,} | {len(latencies) / elapsed:.1f} | "
              f"{percentile_ms(latencies, 0.5):.1f} | {percentile_ms(latencies, 0.99):.1f} | "
              f"{errors} |")  # fmt: skip
    all_latencies = [v for values in tally.latencies.values() for v in values]
    errors = sum(sum(e.values()) for e in tally.errors.values())
    print(f"| all | {total:,} | {total / elapsed:.1f} | {percentile_ms(all_latencies, 0.5):.1f} "
          f"| {percentile_ms(all_latencies, 0.99):.1f} | {errors} |")  # fmt: skip
    if errors:
        ok = False
        print(f"\nERRORS: { {k: dict(v) for k, v in tally.errors.items() if v} }")

    rows = sum(in_database.values())
    lost = sorted(set(tally.accepted_batches) - set(in_database))
    unexpected = sorted(set(in_database) - set(tally.accepted_batches))
    print(
        f"\nEvents: accepted {tally.accepted_events:,} in {len(tally.accepted_batches):,} "
        f"batches; in the database afterwards {rows:,} in {len(in_database):,} batches; "
        f"lost {max(0, tally.accepted_events - rows):,}; batches lost {len(lost)}, stored "
        f"without a 200 {len(unexpected)}."
    )
    if rows != tally.accepted_events or lost or unexpected:
        ok = False
        print(f"MISMATCH: lost batches {lost[:5]}, unexpected {unexpected[:5]}")

    print(f"\nMemory (RSS of each gunicorn worker, sampled every {args.sample_seconds:g} s; "
          f"bound: growth after warm-up <= max(10 %, 16 MiB)):\n")  # fmt: skip
    print("| worker | start MiB | after warm-up MiB | end MiB | peak MiB | growth | bound | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    warm = next((s for s in samples if s["t"] >= warm_until), samples[-1])
    for pid in pids:
        series = [s[pid] for s in samples if s.get(pid) is not None]
        if len(series) < len(samples) or not series:
            ok = False
            print(f"| {pid} | worker died during the soak | | | | | | no |")
            continue
        start, after, end = samples[0][pid], warm[pid], samples[-1][pid]
        peak = max(s[pid] for s in samples if s["t"] >= warm["t"])
        growth = end - after
        bound = max(0.10 * after, 16 * MIB)
        fine = growth <= bound
        ok &= fine
        print(f"| {pid} | {start / MIB:.0f} | {after / MIB:.0f} | {end / MIB:.0f} | "
              f"{peak / MIB:.0f} | {growth / MIB:+.1f} MiB ({growth / after:+.1%}) | "
              f"{bound / MIB:.0f} MiB | {'yes' if fine else 'NO'} |")  # fmt: skip
    first, minutes, seen = samples[0]["t"], [], set()
    for sample in samples:  # the first sample of each minute, and the last one
        minute = int((sample["t"] - first) // 60)
        if minute not in seen or sample is samples[-1]:
            seen.add(minute)
            minutes.append(sample)
    for pid in pids:
        trend = " -> ".join(f"{s[pid] / MIB:.0f}" for s in minutes if s.get(pid) is not None)
        print(f"RSS of worker {pid} each minute, MiB: {trend}")
    if pids_after != pids:
        ok = False
        print(f"gunicorn replaced workers during the soak: {pids} -> {pids_after}")
    print(f"\nVerdict: {'passed' if ok else 'FAILED'} (errors 0, events lost 0, memory bound).")
    return ok


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind.strip() not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        mix[kind.strip()] = float(share)
    return mix


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s, all clients")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20, help="events per batch")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds (<= 1/3 of run)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--fill-feed-sessions",
        type=int,
        default=4096,
        help="warm-up: feed page-1 requests for new users before the timed load (0: none)",
    )
    parser.add_argument("--database-url", default=os.environ.get("SOAK_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--data-dir", help="with --prepare-only: the DATA_DIR to use")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="migrate --database-url, set up the shop, print the API key and ids as JSON",
    )
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=dict(KINDS),
        help="shares of each kind, e.g. 'recommendations=0.5,event batches=0.5' "
        f"(default {','.join(f'{k}={v:g}' for k, v in KINDS.items())})",
    )
    args = parser.parse_args()
    if args.prepare_only:
        print(json.dumps(prepare_shop(args.database_url, args.data_dir)))
        return
    sys.exit(0 if soak(args) else 1)


if __name__ == "__main__":
    main()
