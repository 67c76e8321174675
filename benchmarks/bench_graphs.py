"""Segments and graphs on Last.fm HetRec 2011: Louvain through the product next to networkx, and
whether the follow source / segment-affinity change NDCG@10 under Protocol R.

1. ``user_friends.dat`` (1,892 users, 25,434 friend rows: each friendship listed both ways) is
   built into a follower graph with the product's ``build_follower_graph`` and clustered with its
   ``louvain`` (python-louvain), and with networkx's own ``louvain_communities`` on the same
   undirected, weighted graph, for the same seeds. Modularity is networkx's
   ``community.modularity`` for both, so the numbers compare. Times are wall clock of the
   clustering alone; the product's graph building and per-user features are timed too.
2. ``user_artists.dat`` (play counts, binary as in Protocol R) with the friends as the follow
   graph: ``graphs.analysis.follow_source.compare_sources`` fits ``user-personalization`` (the
   base, default parameters), the base blended with the follow source, the follow source alone
   and ``segment-affinity`` on one Protocol R split per seed, and reports NDCG@10 and the share
   of recommended artists that friends listened to.

The data is read from ``../shared/data/lastfm-hetrec2011`` (or ``--data-dir``); the script skips
cleanly when it is absent. Research data: never copy it into the repository.

    .venv/bin/python benchmarks/bench_graphs.py [--seeds 0 1 2] [--blend-weights 0.1 0.3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")  # shared 2-core machines; before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphs.analysis import (  # noqa: E402
    build_follower_graph,
    compare_partitions,
    graph_features,
    louvain,
    undirected_weighted,
)
from graphs.analysis.follow_source import adjacency_matrix, compare_sources  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"


def load(data_dir: Path):
    folder = data_dir / "lastfm-hetrec2011"
    friends_path, artists_path = folder / "user_friends.dat", folder / "user_artists.dat"
    if not friends_path.is_file():
        return None, None
    friends = pd.read_csv(friends_path, sep="\t")
    artists = pd.read_csv(artists_path, sep="\t") if artists_path.is_file() else None
    return friends, artists


def bench_louvain(friends: pd.DataFrame, seeds: list[int]) -> list[dict]:
    started = time.perf_counter()
    graph, report = build_follower_graph(friends.userID.astype(str), friends.friendID.astype(str))
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _features, info = graph_features(graph)
    feature_seconds = time.perf_counter() - started
    und = undirected_weighted(graph)
    print(
        f"graph: {report['nodes']:,} users, {report['edges']:,} directed edges "
        f"({und.number_of_edges():,} undirected pairs); built in {build_seconds:.2f} s, "
        f"per-user features in {feature_seconds:.2f} s "
        f"(betweenness {info['betweenness']['method']})"
    )
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        ours = louvain(graph, resolution=1.0, seed=seed)
        ours_seconds = time.perf_counter() - started
        ours_sets: dict[int, set] = {}
        for node, community in ours.partition.items():
            ours_sets.setdefault(community, set()).add(node)
        ours_q = nx.community.modularity(und, list(ours_sets.values()))
        started = time.perf_counter()
        theirs = nx.community.louvain_communities(und, weight="weight", resolution=1.0, seed=seed)
        theirs_seconds = time.perf_counter() - started
        theirs_q = nx.community.modularity(und, theirs)
        theirs_labels = {n: c for c, members in enumerate(theirs) for n in members}
        agreement = compare_partitions(ours.labels(), theirs_labels)
        rows.append(
            {
                "seed": seed,
                "product_q": ours_q,
                "product_n": ours.n_communities - ours.singletons,
                "product_s": ours_seconds,
                "networkx_q": theirs_q,
                "networkx_n": sum(1 for c in theirs if len(c) > 1),
                "networkx_s": theirs_seconds,
                "nmi": agreement["nmi"],
            }
        )
    return rows


def bench_effect(
    friends: pd.DataFrame, artists: pd.DataFrame, seeds: list[int], weights: list[float]
) -> list[dict]:
    users = pd.Index(np.union1d(artists.userID.unique(), friends.userID.unique()))
    items = pd.Index(np.sort(artists.artistID.unique()))
    user_rows = users.get_indexer(artists.userID)
    item_rows = items.get_indexer(artists.artistID)
    adjacency = adjacency_matrix(
        users.get_indexer(friends.userID), users.get_indexer(friends.friendID), len(users)
    )
    rows = []
    for seed in seeds:
        for n, weight in enumerate(weights):
            started = time.perf_counter()
            result = compare_sources(
                user_rows,
                item_rows,
                len(users),
                len(items),
                adjacency,
                blend_weight=weight,
                include_segments=n == 0,  # the same for every weight
                seed=seed,
            )
            print(f"seed {seed}, blend weight {weight:g}: {time.perf_counter() - started:.1f} s")
            for row in result["all_users"]:
                if n > 0 and not row["name"].startswith("user-personalization +"):
                    continue
                rows.append({"seed": seed, **row})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--blend-weights", type=float, nargs="+", default=[0.1, 0.3])
    args = parser.parse_args(argv)
    friends, artists = load(args.data_dir)
    if friends is None:
        print(f"skipped: {args.data_dir / 'lastfm-hetrec2011' / 'user_friends.dat'} is absent")
        return 0

    rows = bench_louvain(friends, args.seeds)
    print("\n| seed | product Louvain Q | communities | s | networkx louvain_communities Q "
          "| communities | s | NMI between them |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['product_q']:.4f} | {r['product_n']} | {r['product_s']:.2f} | "
            f"{r['networkx_q']:.4f} | {r['networkx_n']} | {r['networkx_s']:.2f} | {r['nmi']:.3f} |"
        )
    frame = pd.DataFrame(rows)
    print(
        f"| mean | {frame.product_q.mean():.4f} | | {frame.product_s.mean():.2f} | "
        f"{frame.networkx_q.mean():.4f} | | {frame.networkx_s.mean():.2f} | |"
    )

    if artists is None:
        print("\nskipped the NDCG part: user_artists.dat is absent")
        return 0
    effect = pd.DataFrame(bench_effect(friends, artists, args.seeds, args.blend_weights))
    summary = effect.groupby("name", sort=False).agg(
        ndcg=("ndcg", "mean"),
        ndcg_std=("ndcg", "std"),
        recall=("recall", "mean"),
        followed=("followed_share", "mean"),
        seconds=("seconds", "mean"),
    )
    print(f"\nProtocol R, seeds {args.seeds}, mean +- std over seeds")
    print("| candidate | NDCG@10 | Recall@10 | share of top-10 that friends listened to | s |")
    print("|---|---|---|---|---|")
    for name, r in summary.iterrows():
        print(
            f"| {name} | {r.ndcg:.4f} +- {0 if np.isnan(r.ndcg_std) else r.ndcg_std:.4f} | "
            f"{r.recall:.4f} | {r.followed:.3f} | {r.seconds:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
