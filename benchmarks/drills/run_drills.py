"""Run the fault drills one after the other and print what each tried, checked and how it ended.

Usage: ``make drills`` or ``.venv/bin/python benchmarks/drills/run_drills.py [-k pattern]``.

Each drill is a pytest test against the real database (SQLite, or PostgreSQL with DATABASE_URL)
and a real worker or a real small file system; nothing is mocked. The drills' own step-by-step
output ("[fault] ...", "[checked] ...") is shown as they run; the table at the end is the summary
copied into docs/operations.md. The disk-full drills mount a tmpfs and need root; elsewhere they
are reported as skipped. The PostgreSQL restart drill starts its own PostgreSQL 15 cluster
(skipped without /usr/lib/postgresql/15/bin); it is too long for the normal test suite, which
skips it unless RECSITE_DRILLS=1 (set here).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Drill:
    name: str
    test: str
    fault: str
    checks: str


DRILLS = [
    Drill(
        "worker killed mid-import",
        "tests/datasets/test_import_faults.py",
        "SIGKILL to the worker's process group while a 400,000-row full import is loading",
        "old data untouched (no partial rows); job failed with a reason once stale; retry "
        "imports every row",
    ),
    Drill(
        "worker killed mid-training",
        "tests/models_app/test_campaigns.py::"
        "test_worker_killed_mid_run_fails_the_run_and_the_campaign_keeps_serving",
        "SIGKILL to the worker while it fits a model",
        "run failed with a reason once stale; no model version; the campaign keeps serving "
        "the deployed version, also from a fresh process",
    ),
    Drill(
        "disk full: model artefacts",
        "tests/drills/test_disk_full.py::test_disk_full_while_writing_a_models_artefacts",
        "ARTIFACT_DIR on an 8 MB tmpfs filled to 48 KB free, then a training run",
        "'disk is full' error; no version, no half-written folder; old version serves; "
        "space freed; retry succeeds",
    ),
    Drill(
        "disk full: batch export",
        "tests/drills/test_disk_full.py::test_disk_full_while_writing_a_batch_export",
        "ARTIFACT_DIR tmpfs filled, then a batch export of every user",
        "'disk is full' error; no .part or result file; earlier export still downloadable; "
        "space freed; retry succeeds",
    ),
    Drill(
        "disk full: CSV upload",
        "tests/drills/test_disk_full.py::test_disk_full_while_receiving_an_upload",
        "UPLOAD_DIR tmpfs with 512 KB free, then 2 and 3 MB uploads (memory and temp-file paths)",
        "no 500: a 'disk is full' message; no import job waiting; no partial file left",
    ),
    Drill(
        "PostgreSQL restart under load",
        "tests/drills/test_database_restart.py",
        "a private PostgreSQL 15 stopped (-m immediate) for 6 s under API + page load, "
        "then restarted; then stopped (-m fast) and restarted with no traffic",
        "no 500, no hung request; 503 JSON 'database_unavailable' / 503 page with "
        "Retry-After while down; all answered again within seconds, same gunicorn workers; "
        "every accepted event stored, no half-written batch; idle dead connections replaced; "
        "django-q worker runs tasks after",
    ),
]


def run(drill: Drill, extra: list[str]) -> tuple[str, float]:
    print(f"\n=== {drill.name}\n    fault:  {drill.fault}\n    checks: {drill.checks}", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "TEST_DATABASE_NAME": os.environ.get("TEST_DATABASE_NAME", "drills")}
    env["RECSITE_DRILLS"] = "1"  # drills too long for the normal suite run only from here
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", drill.test, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    lines = (result.stdout + result.stderr).splitlines()
    for line in lines:
        if line.strip().startswith("[") or re.match(r"^\d+ (passed|failed|skipped)", line):
            print(f"    {line.strip()}")
    summary = next((line for line in reversed(lines) if " in " in line and "=" in line), "")
    if result.returncode == 0 and "skipped" in summary and "passed" not in summary:
        return "skipped", seconds
    if result.returncode != 0:
        print("\n".join(lines[-40:]))
        return "FAILED", seconds
    return "passed", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only drills whose name contains this")
    args, extra = parser.parse_known_args()
    chosen = [d for d in DRILLS if args.k.lower() in d.name.lower()]
    results = [(drill, *run(drill, extra)) for drill in chosen]
    print("\n| drill | fault injected | checked | result | seconds |")
    print("|---|---|---|---|---|")
    for drill, outcome, seconds in results:
        print(f"| {drill.name} | {drill.fault} | {drill.checks} | {outcome} | {seconds:.0f} |")
    failed = [d.name for d, outcome, _ in results if outcome == "FAILED"]
    print(f"\n{len(results) - len(failed)} of {len(results)} drills passed or were skipped.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
