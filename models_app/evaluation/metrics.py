"""Top-k ranking metrics for implicit feedback, vectorised over users.

Django-free: takes numpy/scipy objects, returns a dict of floats.

All accuracy metrics use binary relevance (an item is relevant when it is in the user's test
set) and are averaged over the users with at least one test item; the others are ignored.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

__all__ = ["evaluate_rankings"]

# Above this many distinct recommended items the item–item cosine block would not fit
# comfortably in memory; diversity is then computed from per-user sums of item vectors.
_MAX_GRAM_ITEMS = 3000
_CHUNK_USERS = 2048
# Item vectors are multiplied densely (float32 BLAS) when that is estimated to be cheaper.
_MAX_DENSE_ENTRIES = 50_000_000
_BLAS_SPEEDUP = 40.0


def evaluate_rankings(
    recommended,
    test,
    train,
    ks=(5, 10, 25),
    item_features=None,
) -> dict[str, float]:
    """Score top-k lists against held-out items.

    Parameters
    ----------
    recommended:
        Integer array (n_users, L): row ``u`` is user ``u``'s ranked list of item rows, best
        first. ``-1`` pads lists shorter than ``L`` (counts as a miss). ``L >= max(ks)``.
    test:
        Sparse users × items matrix; non-zeros are the relevant items.
    train:
        Sparse users × items matrix of training interactions; gives item popularity (novelty,
        popularity bias) and, without ``item_features``, the item vectors for diversity.
    ks:
        Cut-offs. Every metric below is reported for each ``k`` as ``"<name>@<k>"``.
    item_features:
        Optional (n_items, d) dense or sparse item vectors for intra-list diversity.

    Returns
    -------
    dict with, for each k: ``precision``, ``recall`` (hits / |T|), ``ndcg`` (IDCG from
    ``min(|T|, k)`` hits), ``hit``, ``mrr`` (reciprocal rank of the first hit within k, else
    0), ``coverage`` (distinct recommended items / n_items), ``novelty`` (mean self-information
    ``-log2 p(i)``, ``p(i)`` = share of train users with item i, counting at least one user),
    ``diversity`` (intra-list diversity: 1 − mean pairwise cosine of the listed items),
    ``arp`` (average train popularity count of listed items) and ``pop_percentile``
    (mean popularity percentile of listed items, 1.0 = most popular item); plus
    ``n_users`` (users evaluated).
    """
    recommended = np.asarray(recommended)
    test = sp.csr_matrix(test)
    train = sp.csr_matrix(train)
    ks = tuple(sorted({int(k) for k in ks}))
    n_users, n_items = test.shape
    if recommended.ndim != 2 or recommended.shape[0] != n_users:
        raise ValueError(
            f"recommended must have shape (n_users={n_users}, k); got {recommended.shape}."
        )
    if train.shape != test.shape:
        raise ValueError(f"train has shape {train.shape} but test has shape {test.shape}.")
    if not ks or ks[0] < 1 or ks[-1] > recommended.shape[1]:
        raise ValueError(
            f"ks must be positive and at most the list length {recommended.shape[1]}; got {ks}."
        )
    if recommended.size and (recommended.max() >= n_items or recommended.min() < -1):
        raise ValueError(f"recommended holds item rows outside [-1, {n_items}).")

    test_sizes = np.diff(test.indptr)
    users = np.flatnonzero(test_sizes > 0)
    result: dict[str, float] = {"n_users": float(len(users))}
    if len(users) == 0:
        return result

    lists = recommended[users, : ks[-1]].astype(np.int64)
    valid = lists >= 0
    n_test = test_sizes[users].astype(np.float64)
    hits = _hits(lists, valid, users, test)

    ranks = np.arange(1, ks[-1] + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    cum_dcg = np.cumsum(hits * discounts, axis=1)
    cum_hits = np.cumsum(hits, axis=1)
    ideal = np.cumsum(discounts)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.iinfo(np.int64).max)

    counts = np.bincount(train.indices, minlength=n_items).astype(np.float64)
    n_train_users = max(1, int((np.diff(train.indptr) > 0).sum()))
    self_info = -np.log2(np.maximum(counts, 1.0) / n_train_users)
    percentile = rankdata(counts, method="average") / n_items
    safe = np.where(valid, lists, 0)
    n_valid = np.cumsum(valid, axis=1)
    ild = _intra_list_diversity(lists, valid, ks, train, item_features)

    for k in ks:
        h = cum_hits[:, k - 1]
        result[f"precision@{k}"] = float(np.mean(h / k))
        result[f"recall@{k}"] = float(np.mean(h / n_test))
        idcg = ideal[np.minimum(n_test, k).astype(np.int64) - 1]
        result[f"ndcg@{k}"] = float(np.mean(cum_dcg[:, k - 1] / idcg))
        result[f"hit@{k}"] = float(np.mean(h > 0))
        result[f"mrr@{k}"] = float(np.mean(np.where(first_hit <= k, 1.0 / first_hit, 0.0)))
        top = lists[:, :k][valid[:, :k]]
        result[f"coverage@{k}"] = float(np.unique(top).shape[0] / n_items)
        m = np.maximum(n_valid[:, k - 1], 1)
        v = valid[:, :k]
        result[f"novelty@{k}"] = float(np.mean((self_info[safe[:, :k]] * v).sum(1) / m))
        result[f"arp@{k}"] = float(np.mean((counts[safe[:, :k]] * v).sum(1) / m))
        result[f"pop_percentile@{k}"] = float(np.mean((percentile[safe[:, :k]] * v).sum(1) / m))
        result[f"diversity@{k}"] = ild[k]
    return result


def _hits(lists: np.ndarray, valid: np.ndarray, users: np.ndarray, test: sp.csr_matrix):
    """Boolean (len(users), L): is list entry j of user u one of u's test items."""
    n_items = test.shape[1]
    test = test.copy()
    test.sum_duplicates()
    test_users = np.repeat(np.arange(test.shape[0], dtype=np.int64), np.diff(test.indptr))
    test_keys = test_users * n_items + test.indices  # sorted: CSR rows ascending, indices sorted
    keys = users[:, None].astype(np.int64) * n_items + lists
    pos = np.searchsorted(test_keys, keys)
    pos = np.minimum(pos, len(test_keys) - 1)
    return valid & (test_keys[pos] == keys)


def _intra_list_diversity(lists, valid, ks, train, item_features) -> dict[int, float]:
    """Mean over users of 1 − mean pairwise cosine among the first k listed items."""
    if item_features is None:
        vectors = sp.csr_matrix(train.T, dtype=np.float64)  # items × users co-occurrence columns
    elif sp.issparse(item_features):
        vectors = sp.csr_matrix(item_features, dtype=np.float64)
    else:
        vectors = np.asarray(item_features, dtype=np.float64)
    if vectors.shape[0] != train.shape[1]:
        raise ValueError(
            f"item_features has {vectors.shape[0]} rows but there are {train.shape[1]} items."
        )
    distinct, inverse = np.unique(np.where(valid, lists, -1), return_inverse=True)
    inverse = inverse.reshape(lists.shape)
    has_pad = distinct.size and distinct[0] == -1
    rows = distinct[1:] if has_pad else distinct
    sub = vectors[rows]
    norms = _row_norms(sub)
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    sub = sp.diags(inv) @ sub if sp.issparse(sub) else sub * inv[:, None]
    local = inverse - 1 if has_pad else inverse  # -1 marks padding
    self_sim = (norms > 0).astype(np.float64)

    out = {}
    if len(rows) == 0:
        return dict.fromkeys(ks, 0.0)
    if len(rows) <= _MAX_GRAM_ITEMS:
        gram = _gram(sub)
        idx = np.maximum(local, 0)
        present = local >= 0
        sums = np.zeros((len(lists), len(ks)))
        chunk = max(1, _CHUNK_USERS * 625 // ks[-1] ** 2)  # about 10 MB of pairs at a time
        for start in range(0, len(lists), chunk):
            block = idx[start : start + chunk, : ks[-1]]
            keep = present[start : start + chunk, : ks[-1]]
            pair = gram[block[:, :, None], block[:, None, :]]
            pair *= keep[:, :, None] & keep[:, None, :]  # padding → no similarity
            corner = pair.cumsum(axis=1).cumsum(axis=2)  # [u, k-1, k-1] = sum of top-left k × k
            sums[start : start + chunk] = corner[:, np.array(ks) - 1, np.array(ks) - 1]
        for j, k in enumerate(ks):
            out[k] = _ild_from_sums(sums[:, j], local[:, :k], self_sim)
        return out

    for k in ks:
        sims = np.zeros(len(lists))
        for start in range(0, len(lists), _CHUNK_USERS):
            block = local[start : start + _CHUNK_USERS, :k]
            r, c = np.nonzero(block >= 0)
            indicator = sp.csr_matrix(
                (np.ones(len(r)), (r, block[r, c])), shape=(block.shape[0], len(rows))
            )
            summed = indicator @ sub
            if sp.issparse(summed):
                summed = sp.csr_matrix(summed)
                sq = np.bincount(
                    np.repeat(np.arange(summed.shape[0]), np.diff(summed.indptr)),
                    weights=summed.data**2,
                    minlength=summed.shape[0],
                )
            else:
                sq = (np.asarray(summed) ** 2).sum(axis=1)
            sims[start : start + _CHUNK_USERS] = sq
        out[k] = _ild_from_sums(sims, local[:, :k], self_sim)
    return out


def _gram(sub) -> np.ndarray:
    """``sub @ sub.T`` as a dense array, by BLAS when that is cheaper than a sparse product."""
    if not sp.issparse(sub):
        return np.asarray(sub @ sub.T)
    m, d = sub.shape
    per_dim = np.diff(sp.csc_matrix(sub).indptr).astype(np.float64)
    sparse_work = float((per_dim**2).sum())
    if m * d <= _MAX_DENSE_ENTRIES and m * m * d < _BLAS_SPEEDUP * sparse_work:
        dense = sub.toarray().astype(np.float32)
        return (dense @ dense.T).astype(np.float64)
    return (sub @ sub.T).toarray()


def _ild_from_sums(total_sims, local, self_sim) -> float:
    """``total_sims`` = Σ_i Σ_j cos(i, j) including i = j; remove the diagonal and average."""
    present = local >= 0
    n = present.sum(axis=1)
    diag = np.where(present, self_sim[np.where(present, local, 0)], 0.0).sum(axis=1)
    pairs = n * (n - 1)
    mean_cos = np.where(pairs > 0, (total_sims - diag) / np.maximum(pairs, 1), 0.0)
    scored = pairs > 0
    if not scored.any():
        return 0.0
    return float(np.mean(1.0 - mean_cos[scored]))


def _row_norms(matrix) -> np.ndarray:
    if sp.issparse(matrix):
        return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return np.linalg.norm(matrix, axis=1)
