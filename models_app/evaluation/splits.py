"""Train/valid/test splits of implicit-feedback interactions.

Django-free: takes numpy arrays of row indices and returns scipy CSR matrices.

Two protocols:

- :func:`protocol_r_split` is Protocol R of ``BENCHMARKS.md`` (RecBole's random 80/10/10 split
  per user), so numbers compare with published tables.
- :func:`personalize_split` mimics Amazon Personalize's offline metrics: the newest interactions
  of a random share of users are held out, everything else is training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["Split", "personalize_split", "protocol_r_split"]


@dataclass(frozen=True)
class Split:
    """Binary users × items CSR matrices with disjoint non-zeros.

    ``valid`` is an empty matrix of the same shape when the protocol has no validation part.
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix

    @property
    def shape(self) -> tuple[int, int]:
        return self.train.shape

    def users_with(self, part: str = "test") -> np.ndarray:
        """Rows of the users with at least one interaction in ``part`` ("valid" or "test")."""
        matrix = getattr(self, part)
        return np.flatnonzero(np.diff(matrix.indptr) > 0)


def _as_index_array(values, name: str, size: int, limit: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != size:
        raise ValueError(
            f"{name} must be a 1-d array with {size} entries, got shape {array.shape}."
        )
    if size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer row indices, got dtype {array.dtype}.")
    array = array.astype(np.int64, copy=False)
    if size and (array.min() < 0 or array.max() >= limit):
        raise ValueError(
            f"{name} must lie in [0, {limit}); found values from {array.min()} to {array.max()}. "
            "Map ids to contiguous rows first, or pass the right n_users / n_items."
        )
    return array


def _binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix(
        (np.ones(users.shape[0], dtype=np.float32), (users, items)), shape=shape, dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def protocol_r_split(user_idx, item_idx, n_users: int, n_items: int, seed: int) -> Split:
    """Protocol R: every interaction positive, duplicates dropped, 80/10/10 per user at random.

    A user with ``n`` distinct items gets ``floor(0.1 n)`` valid and ``floor(0.1 n)`` test items
    (so users with fewer than 10 items are all train) and the rest in train. The order within a
    user is a uniform random permutation drawn from ``numpy.random.default_rng(seed)``; the same
    inputs and seed always give the same split, whatever the order of the input rows.

    Note: RecBole itself moves one item into valid/test when ``0 < 0.1 n < 1``; Protocol R as
    written in BENCHMARKS.md (and this function) uses the plain floor.
    """
    n = len(user_idx)
    users = _as_index_array(user_idx, "user_idx", n, n_users)
    items = _as_index_array(item_idx, "item_idx", len(users), n_items)
    # Deduplicate and put into a canonical (user, item) order, independent of input order.
    keys = np.unique(users * np.int64(n_items) + items)
    users, items = keys // n_items, keys % n_items

    rng = np.random.default_rng(seed)
    # Shuffle within each user: sort by (user, random key).
    order = np.lexsort((rng.random(keys.shape[0]), users))
    users, items = users[order], items[order]

    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(users.shape[0]) - starts[users]
    n_holdout = counts // 10  # floor(0.1 n), exact in integers
    n_train = counts - 2 * n_holdout
    pos_train = n_train[users]
    in_train = position < pos_train
    in_valid = ~in_train & (position < pos_train + n_holdout[users])
    in_test = ~in_train & ~in_valid

    shape = (n_users, n_items)
    return Split(
        train=_binary_csr(users[in_train], items[in_train], shape),
        valid=_binary_csr(users[in_valid], items[in_valid], shape),
        test=_binary_csr(users[in_test], items[in_test], shape),
    )


def personalize_split(
    user_idx,
    item_idx,
    timestamps,
    n_users: int,
    n_items: int,
    seed: int,
    user_share: float = 0.1,
    holdout_share: float = 0.1,
) -> Split:
    """Amazon Personalize's offline split: the newest interactions of a random share of users.

    ``round(user_share × eligible users)`` users (at least one) are drawn at random among the
    users with two or more distinct items; each of them keeps its newest
    ``max(1, floor(holdout_share × n))`` distinct items as test. Everything else, including all
    interactions of the other users, is train. ``valid`` is empty.

    Repeated (user, item) interactions count once, at their newest timestamp, so a held-out item
    never also appears in the same user's train. Ties between equal timestamps are broken at
    random (from ``seed``), so the split is deterministic per seed.
    """
    if not 0 < user_share <= 1 or not 0 < holdout_share < 1:
        raise ValueError(
            f"user_share must be in (0, 1] and holdout_share in (0, 1); "
            f"got {user_share} and {holdout_share}."
        )
    n = len(user_idx)
    users = _as_index_array(user_idx, "user_idx", n, n_users)
    items = _as_index_array(item_idx, "item_idx", n, n_items)
    times = np.asarray(timestamps)
    if times.shape != (n,):
        raise ValueError(f"timestamps must be a 1-d array with {n} entries, got {times.shape}.")
    times = _sortable(times)

    # Keep the newest occurrence of each (user, item).
    keys = users * np.int64(n_items) + items
    order = np.lexsort((times, keys))
    keys, times = keys[order], times[order]
    last = np.ones(keys.shape[0], dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    keys, times = keys[last], times[last]
    users, items = keys // n_items, keys % n_items

    rng = np.random.default_rng(seed)
    counts = np.bincount(users, minlength=n_users)
    eligible = np.flatnonzero(counts >= 2)
    n_chosen = min(len(eligible), max(1, round(user_share * len(eligible)))) if len(eligible) else 0
    chosen = np.zeros(n_users, dtype=bool)
    chosen[rng.choice(eligible, size=n_chosen, replace=False)] = True

    # Newest first within each user, random tie-break.
    order = np.lexsort((rng.random(keys.shape[0]), -times, users))
    users, items = users[order], items[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(users.shape[0]) - starts[users]
    n_holdout = np.maximum(1, np.floor(holdout_share * counts).astype(np.int64))
    in_test = chosen[users] & (position < n_holdout[users])

    shape = (n_users, n_items)
    return Split(
        train=_binary_csr(users[~in_test], items[~in_test], shape),
        valid=_binary_csr(users[:0], items[:0], shape),
        test=_binary_csr(users[in_test], items[in_test], shape),
    )


def _sortable(times: np.ndarray) -> np.ndarray:
    """Timestamps as signed numbers that can be negated (datetime64 → int64 nanoseconds)."""
    if times.dtype.kind == "M":
        return times.astype("datetime64[ns]").astype(np.int64)
    if times.dtype.kind in "iub":
        return times.astype(np.int64)
    if times.dtype.kind == "f":
        return times
    raise ValueError(
        f"timestamps must be numbers or datetime64 values, got dtype {times.dtype}. "
        "Parse them first, e.g. with pandas.to_datetime."
    )
