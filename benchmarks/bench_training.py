"""Training speed: recsite's whole training run against a raw `implicit` ALS fit, same run.

    .venv/bin/python benchmarks/bench_training.py [--database-url URL] [--interactions N]

Generates the demo shop (675,000 interactions by default: the size of Amazon Personalize's
e-commerce tutorial, where a training run takes about an hour), imports it into a fresh
benchmark database, then times:

- the product's whole training run of `user-personalization` with its defaults (read the events
  from the database, build the matrix, evaluate on a held-out split, refit on everything, save
  the artefacts, create the version), as the worker runs it;
- the recipe's fit step alone on the full matrix;
- a raw `implicit` AlternatingLeastSquares fit on the same confidence matrix with the same
  factors, regularisation, iterations and threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.servers import recreate_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/recsite_bench_training"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--interactions", type=int, default=675_000)
    parser.add_argument("--repeats", type=int, default=3, help="fits of each kind (best kept)")
    return parser.parse_args()


def best_of(repeats: int, fit) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fit()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    if args.database_url.startswith("postgres"):
        recreate_database(args.database_url)
    # Uploads, artefacts and the secret key of this run stay out of the real data folder.
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="recsite-bench-")
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from datasets import imports
    from datasets.ingest.demo import generate_demo_shop
    from datasets.models import Project
    from models_app import selectors, services
    from models_app.recipes import aggregate_events, get_recipe

    call_command("migrate", verbosity=0)
    project = Project.objects.create(slug="bench-training", name="Bench training")
    with tempfile.TemporaryDirectory() as tmp:
        files = generate_demo_shop(tmp, n_interactions=args.interactions)["files"]
        job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    if job.status != "succeeded":
        raise SystemExit(f"import failed: {job.error}")
    print(f"imported {job.report['accepted']:,} interactions in {job.report['seconds']} s")

    solution = services.create_solution(project=project, recipe="user-personalization")
    run = services.start_training(solution=solution, enqueue=False)
    started = time.perf_counter()
    run = services.run_training(run)
    whole_run = time.perf_counter() - started
    if run.status != "succeeded":
        raise SystemExit(f"training failed: {run.error}")
    metrics = run.version.metrics

    events = selectors.interaction_arrays(project)
    _, user_rows = np.unique(events.users, return_inverse=True)
    _, item_rows = np.unique(events.items, return_inverse=True)
    shape = (int(user_rows.max()) + 1, int(item_rows.max()) + 1)
    X, _ = aggregate_events(user_rows, item_rows, shape, timestamps=events.timestamps)
    recipe = get_recipe("user-personalization")()
    product_fit = best_of(args.repeats, lambda: get_recipe("user-personalization")().fit(X))
    recipe.fit(X)
    confidence = recipe._confidence(X)

    def raw_fit():
        with threadpool_limits(1, "blas"):
            AlternatingLeastSquares(
                factors=recipe.factors, regularization=recipe.regularization, alpha=1.0,
                iterations=recipe.iterations, num_threads=recipe.num_threads, random_state=0,
            ).fit(confidence, show_progress=False)  # fmt: skip

    raw = best_of(args.repeats, raw_fit)
    print()
    print(
        "| data | interactions | matrix | whole training run s | peak RSS | product fit s "
        "| raw implicit fit s | fit ratio | NDCG@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| demo shop | {len(events):,} | {shape[0]:,} x {shape[1]:,}, {X.nnz:,} cells "
        f"| {whole_run:.1f} | {run.peak_memory_bytes / 2**20:,.0f} MiB | {product_fit:.2f} "
        f"| {raw:.2f} | {product_fit / raw:.2f}x | {metrics.get('ndcg@10', 0):.4f} |"
    )


if __name__ == "__main__":
    main()
