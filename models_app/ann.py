"""Approximate top-k by inner product for very large catalogues (Django-free).

Serving scores a user against every item (``item_factors @ user_vector``) and keeps the top k;
that is a few milliseconds up to a few hundred thousand items, and too slow beyond. Above
``THRESHOLD_ITEMS`` items, training also builds an :class:`ItemIndex` over the ALS item
factors and saves it with the artefacts; serving then asks the index for an over-fetched set
of candidates and scores only those exactly.

The index is faiss's IVF-Flat with inner-product metric (``faiss-cpu``), chosen by measurement
(docs/benchmarks.md, "Serving"): against HNSW (faiss and hnswlib) on 200k ALS-like factors
it reached the same recall@20 at similar query times (well under a millisecond) but builds
several times faster, which matters because it is built during training; and inner product on
HNSW needs a large ``efSearch`` to be exact on items of very different norms.

``nprobe`` (how many of the ``nlist`` clusters a query visits) is calibrated at build time:
the smallest value whose recall@k against brute force, on sample queries (the users' own
factors when given), reaches ``target_recall``. Vectors in, integer column indices out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Training builds an index when the catalogue has at least this many items (below it,
# brute force takes under 5 ms per request on one core: docs/benchmarks.md).
THRESHOLD_ITEMS = 200_000
INDEX_FILE = "ann.faiss"
META_FILE = "ann.json"
# Sample queries used to calibrate nprobe, and the k of the recall measured on them.
CALIBRATION_QUERIES = 200
CALIBRATION_K = 20
DEFAULT_TARGET_RECALL = 0.97


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is in requirements.txt
        raise RuntimeError(
            "The approximate index needs the faiss-cpu package: pip install -r requirements.txt"
        ) from exc
    return faiss


def _as_matrix(vectors) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise ValueError(f"Expected a vector or a matrix of vectors, got shape {matrix.shape}.")
    return matrix


def _exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ items.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return top


class ItemIndex:
    """An inner-product index over item vectors; ``search`` returns exact scores of the
    candidates it found, best first."""

    def __init__(self, index, items: np.ndarray, nprobe: int, recall: float | None):
        self._index = index
        self._items = items
        self.nprobe = nprobe
        self.calibrated_recall = recall
        index.nprobe = nprobe

    # -- building -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        item_factors,
        *,
        sample_queries=None,
        target_recall: float = DEFAULT_TARGET_RECALL,
        nlist: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> ItemIndex:
        """Cluster the items (k-means on a sample), add them all, calibrate ``nprobe``.

        ``sample_queries``: vectors like the ones serving will search with (the users'
        factors); without them, item vectors are used as queries.
        """
        faiss = _faiss()
        items = _as_matrix(item_factors)
        n, dim = items.shape
        if n == 0:
            raise ValueError("Cannot build an index over an empty catalogue.")
        if threads:
            faiss.omp_set_num_threads(int(threads))
        nlist = int(nlist or max(1, min(int(4 * math.sqrt(n)), n // 40 or 1)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = items
        if n > 64 * nlist:  # k-means on 64 points per cluster is plenty
            train = items[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(train)
        index.add(items)
        queries = (
            _as_matrix(sample_queries)
            if sample_queries is not None and len(sample_queries)
            else items
        )
        if len(queries) > CALIBRATION_QUERIES:
            queries = queries[np.sort(rng.choice(len(queries), CALIBRATION_QUERIES, False))]
        nprobe, recall = cls._calibrate(index, items, queries, nlist, target_recall)
        return cls(index, items, nprobe, recall)

    @staticmethod
    def _calibrate(index, items, queries, nlist, target_recall):
        k = min(CALIBRATION_K, len(items))
        exact = _exact_top(items, queries, k)
        nprobe, recall = 1, 0.0
        while True:
            index.nprobe = nprobe
            _, found = index.search(queries, k)
            recall = float(
                np.mean(
                    [
                        len(np.intersect1d(f[f >= 0], e, assume_unique=True)) / k
                        for f, e in zip(found, exact, strict=True)
                    ]
                )
            )
            if recall >= target_recall or nprobe >= nlist:
                return nprobe, recall
            nprobe = min(nlist, nprobe * 2)

    # -- searching ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def search(self, query, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(columns, exact scores) of up to ``k`` items with the largest inner product with
        ``query`` (one vector), best first."""
        k = int(min(k, len(self._items)))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        vector = _as_matrix(query)
        _, found = self._index.search(vector, k)
        cols = found[0][found[0] >= 0].astype(np.int64)
        scores = self._items[cols] @ vector[0]
        order = np.argsort(-scores, kind="stable")
        return cols[order], scores[order]

    def describe(self) -> str:
        recall = "" if self.calibrated_recall is None else f", recall {self.calibrated_recall:.3f}"
        return f"faiss IVF-Flat inner product, nlist {self._index.nlist}, nprobe {self.nprobe}" + (
            recall
        )

    # -- files ----------------------------------------------------------------------------

    def save(self, folder) -> None:
        faiss = _faiss()
        folder = Path(folder)
        faiss.write_index(self._index, str(folder / INDEX_FILE))
        meta = {
            "kind": "faiss-ivf-flat-ip",
            "n_items": len(self._items),
            "dim": int(self._items.shape[1]),
            "nprobe": self.nprobe,
            "calibrated_recall": self.calibrated_recall,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder, item_factors) -> ItemIndex | None:
        """The index saved in ``folder`` over ``item_factors``; None when there is none.

        ``ValueError`` when it does not match the item factors (another model's index)."""
        folder = Path(folder)
        if not (folder / INDEX_FILE).exists():
            return None
        faiss = _faiss()
        meta = json.loads((folder / META_FILE).read_text())
        items = _as_matrix(item_factors)
        if meta["n_items"] != len(items) or meta["dim"] != items.shape[1]:
            raise ValueError(
                f"The approximate index in {folder} covers {meta['n_items']} items of "
                f"{meta['dim']} factors, but the model has {len(items)} of {items.shape[1]}: "
                "retrain to rebuild it."
            )
        index = faiss.read_index(str(folder / INDEX_FILE))
        return cls(index, items, int(meta["nprobe"]), meta.get("calibrated_recall"))


def should_build(n_items: int, threshold: int = THRESHOLD_ITEMS) -> bool:
    return n_items >= threshold
