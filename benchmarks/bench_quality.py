"""Recommendation quality under Protocol R (BENCHMARKS.md): peers and the product's recipes.

Splits each dataset with ``protocol_r_split`` for 3 seeds, fits every model on train only,
ranks all items with the user's train and valid items masked and prints one markdown table of
test metrics (mean ± std over seeds). Peers are computed here: popularity, ``implicit`` ALS with
library defaults and EASE (λ = 250). The product's recipes (``popularity-count``, ``ease``,
``user-personalization``, ``item-knn``) are added when ``models_app.recipes.get_recipe`` can
provide them; a missing registry or recipe is skipped.

Datasets are read from ``../shared/data`` next to the repository (or ``--data-dir``); a dataset
whose folder is absent is skipped. They are research-only: never copy them into the repo.

    .venv/bin/python benchmarks/bench_quality.py
    .venv/bin/python benchmarks/bench_quality.py --datasets ml-100k --seeds 0 1 2
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")  # shared 2-core machines; before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers import EASE, ImplicitALS, Popularity  # noqa: E402

from models_app.evaluation.harness import evaluate_recipe  # noqa: E402
from models_app.evaluation.splits import protocol_r_split  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
PRODUCT_RECIPES = ("popularity-count", "ease", "user-personalization", "item-knn")
K = 10
COLUMNS = ("ndcg@10", "recall@10", "coverage@10", "fit_seconds")


def load_ml100k(data_dir: Path):
    path = data_dir / "ml-100k" / "original" / "u.data"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "ts"])
    return frame["user"].to_numpy(), frame["item"].to_numpy()


def load_lastfm(data_dir: Path):
    path = data_dir / "lastfm-hetrec2011" / "user_artists.dat"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, sep="\t")  # userID, artistID, weight (play count, ignored)
    return frame["userID"].to_numpy(), frame["artistID"].to_numpy()


DATASETS = {"ml-100k": load_ml100k, "lastfm-hetrec2011": load_lastfm}


def peer_factories(seed: int) -> dict:
    return {
        "Pop (peer)": Popularity,
        "implicit ALS defaults (peer)": lambda: ImplicitALS(random_state=seed, num_threads=2),
        "EASE λ=250 (peer)": lambda: EASE(reg=250.0),
    }


def product_factories() -> dict:
    """The product's recipes that can be found today; the rest are reported as skipped."""
    factories = {}
    try:
        from models_app.recipes import get_recipe
    except ImportError as error:
        print(f"product recipes skipped: {error}", file=sys.stderr)
        return factories
    for name in PRODUCT_RECIPES:
        try:
            found = get_recipe(name)
        except (ImportError, KeyError) as error:
            print(f"recipe {name!r} skipped: {error!r}", file=sys.stderr)
            continue
        if isinstance(found, type) or not hasattr(found, "fit"):
            factories[f"{name} (recsite)"] = found
        else:  # an instance: ask the registry for a fresh one per fit
            factories[f"{name} (recsite)"] = lambda name=name: get_recipe(name)
    return factories


def run(datasets, seeds, data_dir: Path) -> list[dict]:
    rows = []
    products = product_factories()
    for dataset in datasets:
        loaded = DATASETS[dataset](data_dir)
        if loaded is None:
            print(f"{dataset}: not found under {data_dir}, skipped", file=sys.stderr)
            continue
        raw_users, raw_items = loaded
        user_ids, users = np.unique(raw_users, return_inverse=True)
        item_ids, items = np.unique(raw_items, return_inverse=True)
        results: dict[str, list[dict]] = {}
        for seed in seeds:
            split = protocol_r_split(users, items, len(user_ids), len(item_ids), seed=seed)
            for name, factory in {**peer_factories(seed), **products}.items():
                try:
                    metrics = evaluate_recipe(factory, split, k=K)
                except Exception:  # a broken recipe must not hide the other rows
                    print(f"{dataset} / {name} / seed {seed} failed:", file=sys.stderr)
                    traceback.print_exc()
                    continue
                results.setdefault(name, []).append(metrics)
                print(
                    f"{dataset} seed {seed} {name}: ndcg@10 {metrics['ndcg@10']:.4f} "
                    f"fit {metrics['fit_seconds']:.1f}s",
                    file=sys.stderr,
                )
        for name, runs in results.items():
            row = {"dataset": dataset, "model": name, "seeds": len(runs)}
            for column in COLUMNS:
                values = np.array([r[column] for r in runs])
                row[column] = (values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | model | NDCG@10 | Recall@10 | coverage@10 | fit s | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row['ndcg@10'][0]:.3f} ± {row['ndcg@10'][1]:.3f}",
            f"{row['recall@10'][0]:.3f} ± {row['recall@10'][1]:.3f}",
            f"{row['coverage@10'][0]:.3f}",
            f"{row['fit_seconds'][0]:.2f}",
        ]
        lines.append(
            f"| {row['dataset']} | {row['model']} | {' | '.join(cells)} | {row['seeds']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with threadpool_limits(limits=2):
        rows = run(args.datasets, args.seeds, args.data_dir)
    print(markdown(rows))
    elapsed = time.perf_counter() - started
    print(f"\nProtocol R, seeds {args.seeds}, fit on train only; {elapsed:.0f} s")


if __name__ == "__main__":
    main()
