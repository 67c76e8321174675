"""The recipe protocol shared by every recommender in this package.

A recipe is a small estimator in the scikit-learn style:

* hyper-parameters are the keyword arguments of ``__init__`` and are stored unchanged as
  attributes of the same name (``get_params()`` / ``set_params()``);
* everything learned by ``fit`` is stored in attributes whose names end in ``_``;
* ``fit(X, **kwargs)`` takes a ``scipy.sparse`` user x item matrix of non-negative weights.
  Optional keyword arguments are used by the recipes that need them and ignored by the
  others, and every recipe still fits without them (or refuses clearly when it cannot):
  ``item_features`` (a DataFrame, one row per item column, ``CREATION_TIMESTAMP`` in unix
  seconds), ``impressions`` (times each item column was shown), ``now`` (unix seconds, the
  latest interaction time), ``sessions`` (CSR sessions x items), ``timestamps``,
  ``event_types``. ``timestamps`` and ``event_types`` are per stored entry of ``X``
  (aligned with ``X.tocsr().data``, one value per (user, item) cell: the time and type of
  the cell's latest event); see :func:`aggregate_events` to build them from an event log;
* ``recommend(user_rows, k, exclude=None)`` returns ``(item_rows, scores)``, both of shape
  ``(len(user_rows), k)``, best first, padded with ``-1`` / ``-inf`` when fewer than ``k``
  items are available;
* ``similar_items(item_rows, k)`` where it makes sense (``NotImplementedError`` otherwise);
* ``rank(user_row, item_rows)`` re-ranks a list of candidate items the caller supplies for one
  user and returns ``(item_rows_sorted, scores)``; every recipe supports it through
  ``_score_users`` (``personalized-ranking`` is the recipe made for it);
* ``save(path)`` / ``load(path)``: one ``.npz`` file holding the learned arrays and the
  parameters as JSON. Nothing is pickled, so loading an artefact never runs code.

This module must stay free of Django.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

FORMAT_VERSION = 1
_META_KEY = "__recipe_meta__"
_SPARSE_SUFFIXES = ("data", "indices", "indptr", "shape")
# Users scored at once by the default ``recommend``: bounds memory at batch x n_items floats.
SCORE_BATCH = 1024


# --- validation helpers ---------------------------------------------------------------------
def check_interactions(X: Any) -> sp.csr_matrix:
    """Return ``X`` as a float32 CSR matrix or raise ``ValueError`` saying what is wrong."""
    if not sp.issparse(X):
        if isinstance(X, np.ndarray) and X.ndim == 2:
            X = sp.csr_matrix(X)
        else:
            raise ValueError(
                "interactions must be a scipy.sparse matrix of shape (n_users, n_items), got "
                f"{type(X).__name__}; build one with scipy.sparse.csr_matrix((weights, (user_rows,"
                " item_rows)), shape=(n_users, n_items))."
            )
    # A copy: recipes may edit X in place (binarise, weight) and the caller's matrix must not
    # change (scipy shares the arrays of a float32 CSR input otherwise).
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"interactions matrix is empty: shape {X.shape}; it needs users and items."
        )
    X.sum_duplicates()
    X.eliminate_zeros()
    if X.nnz == 0:
        raise ValueError(
            f"interactions matrix of shape {X.shape} has no non-zero entries; there is nothing "
            "to learn from. Check that the dataset has interactions."
        )
    if not np.all(np.isfinite(X.data)):
        raise ValueError("interactions contain NaN or infinite weights; clean them before fitting.")
    if X.data.min() < 0:
        raise ValueError(
            f"interactions contain negative weights (min {X.data.min():g}); weights must be >= 0."
        )
    return X


def check_per_entry(values: Any, X: sp.csr_matrix, name: str, dtype=None) -> np.ndarray | None:
    """Validate an optional array aligned with ``X.data`` (one value per stored entry)."""
    if values is None:
        return None
    values = np.asarray(values, dtype=dtype)
    if values.ndim != 1 or len(values) != X.nnz:
        raise ValueError(
            f"{name} must be a 1-D array with one value per stored entry of the interactions "
            f"matrix (X.nnz = {X.nnz}, in CSR order), got shape {values.shape}."
        )
    return values


def top_n_sparse(blocks, shape: tuple[int, int], n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest positive entries of each row, as a sparse matrix.

    ``blocks`` yields ``(first_row, dense_block)`` pairs that cover the rows in order, so the
    dense item x item matrix never exists whole (item-item similarities, associations).
    """
    rows, cols, vals = [], [], []
    for start, block in blocks:
        if n <= 0:
            continue
        top = np.argpartition(-block, n - 1, axis=1)[:, :n]
        top_vals = np.take_along_axis(block, top, axis=1)
        keep = top_vals > 0
        rows.append(np.repeat(np.arange(start, start + len(block)), n)[keep.ravel()])
        cols.append(top[keep])
        vals.append(top_vals[keep])
    if not rows:
        return sp.csr_matrix(shape, dtype=np.float32)
    data = np.concatenate(vals).astype(np.float32)
    return sp.csr_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}.")
    return int(k)


def check_rows(rows: Any, n: int, what: str) -> np.ndarray:
    """Validate a 1-D array of row indices in ``[0, n)``; ``what`` is 'user' or 'item'."""
    rows = np.asarray(rows)
    if rows.ndim == 0:
        rows = rows.reshape(1)
    if rows.ndim != 1:
        raise ValueError(
            f"{what}_rows must be a 1-D array of {what} row indices, got shape {rows.shape}."
        )
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"{what}_rows must contain integer row indices, got dtype {rows.dtype}.")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][:5].tolist()
        raise ValueError(
            f"{what}_rows out of range: {bad} (the model was fitted on {n} {what}s, valid rows are "
            f"0..{n - 1}). New {what}s need a retrained model"
            + (" or fold-in." if what == "user" else ".")
        )
    return rows


def check_user_row(user_row: Any, n_users: int) -> np.ndarray:
    """One user row as a length-1 array, or ``ValueError`` saying what is wrong."""
    rows = check_rows(user_row, n_users, "user")
    if len(rows) != 1:
        raise ValueError(
            f"rank scores one user at a time: pass a single user row, got {len(rows)} rows."
        )
    return rows


def check_candidates(item_rows: Any, n_items: int) -> np.ndarray:
    """Candidate item rows for ``rank``: validated, duplicates collapsed to the first one."""
    rows = check_rows(item_rows, n_items, "item")
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)]


def order_by_score(item_rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort candidates best first; equal scores keep the caller's order (stable sort)."""
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    return item_rows[order], scores[order]


def check_exclude(exclude: Any, n_rows: int, n_items: int) -> sp.csr_matrix | None:
    if exclude is None:
        return None
    if not sp.issparse(exclude):
        raise ValueError(
            f"exclude must be a scipy.sparse matrix or None, got {type(exclude).__name__}."
        )
    if exclude.shape != (n_rows, n_items):
        raise ValueError(
            f"exclude must have shape (len(user_rows), n_items) = {(n_rows, n_items)}, got "
            f"{exclude.shape}; pass X[user_rows] to exclude the users' known items."
        )
    return sp.csr_matrix(exclude)


# --- top-k ----------------------------------------------------------------------------------
def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of a dense score matrix, best first.

    Uses ``argpartition`` then sorts only the ``k`` winners. Entries equal to ``-inf`` (masked
    items) are never returned: their slots are padded with item ``-1`` and score ``-inf``, as
    are the slots beyond the number of columns. Ties are broken by the lower column index.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        scores = scores[None, :]
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    if kk < n_cols:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    values = np.take_along_axis(part_scores, order, axis=1)
    masked = ~np.isfinite(values) & (values < 0)
    values = np.where(masked, -np.inf, values).astype(np.float32)
    items = np.where(masked | np.isnan(values), -1, items)
    if kk < k:
        pad = k - kk
        items = np.hstack([items, np.full((n_rows, pad), -1, dtype=np.int64)])
        values = np.hstack([values, np.full((n_rows, pad), -np.inf, dtype=np.float32)])
    return items, values


def mask_scores(scores: np.ndarray, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Set ``scores[r, c] = -inf`` for every stored entry of ``exclude`` (in place)."""
    if exclude is not None and exclude.nnz:
        r, c = exclude.nonzero()
        scores[r, c] = -np.inf
    return scores


# --- events -> matrix -----------------------------------------------------------------------
def aggregate_events(
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    shape: tuple[int, int],
    weights: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    event_types: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
    """Turn an event log into ``(X, fit_kwargs)``.

    ``X[u, i]`` is the summed weight (1 per event by default) of user ``u``'s events on item
    ``i``; ``fit_kwargs`` holds ``timestamps`` and ``event_types`` aligned with ``X.data``:
    the time and type of each cell's latest event. Pass them on as ``fit(X, **fit_kwargs)``.
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    item_rows = np.asarray(item_rows, dtype=np.int64)
    if user_rows.shape != item_rows.shape or user_rows.ndim != 1:
        raise ValueError("user_rows and item_rows must be 1-D arrays of the same length.")
    w = np.ones(len(user_rows), np.float32) if weights is None else np.asarray(weights, np.float32)
    X = sp.csr_matrix((w, (user_rows, item_rows)), shape=shape, dtype=np.float32)
    X.sum_duplicates()
    kwargs: dict[str, np.ndarray] = {}
    if timestamps is not None or event_types is not None:
        ts = np.zeros(len(user_rows)) if timestamps is None else np.asarray(timestamps, float)
        # Sort by cell then time: the last event of each cell wins.
        cell = user_rows * shape[1] + item_rows
        order = np.lexsort((ts, cell))
        cell_sorted = cell[order]
        last = np.r_[cell_sorted[1:] != cell_sorted[:-1], True]
        chosen = order[last]  # one per cell, in increasing cell (= CSR) order
        keep = np.asarray(X[user_rows[chosen], item_rows[chosen]]).ravel() != 0
        chosen = chosen[keep]
        if timestamps is not None:
            kwargs["timestamps"] = ts[chosen]
        if event_types is not None:
            kwargs["event_types"] = np.asarray(event_types, dtype=object)[chosen]
    X.eliminate_zeros()
    return X, kwargs


# --- the base class -------------------------------------------------------------------------
class Recipe:
    """Base class of all recipes; see the module docstring for the protocol.

    Subclasses set ``name``, ``description`` and ``param_docs``, define ``__init__`` with
    keyword-only hyper-parameters, implement ``_fit`` and ``_score_users`` (and
    ``_score_similar`` if they support ``similar_items``), and list their learned attributes in
    ``_learned`` so ``save``/``load`` can store them.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    param_docs: ClassVar[dict[str, str]] = {}
    _learned: ClassVar[tuple[str, ...]] = ()

    # -- parameters --------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {n: signature.parameters[n].default for n in cls._param_names()}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._param_names()}

    def set_params(self, **params: Any) -> Recipe:
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {', '.join(valid)}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X: Any, **kwargs: Any) -> Recipe:
        """Learn from the user x item matrix ``X``; returns ``self``."""
        X = check_interactions(X)
        for attr in ("n_users_", "n_items_"):  # a failed fit leaves no "fitted" marker behind
            self.__dict__.pop(attr, None)
        self._fit(X, **kwargs)
        self.n_users_, self.n_items_ = X.shape
        return self

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise ValueError(f"This {type(self).__name__} is not fitted yet; call fit(X) first.")

    # -- recommending ------------------------------------------------------------------------
    def recommend(
        self, user_rows: Any, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items for each of ``user_rows``.

        ``exclude`` is an optional sparse matrix of shape ``(len(user_rows), n_items)``: its
        stored entries are items never to recommend to that user (typically ``X[user_rows]``).
        Returns ``(item_rows, scores)``, each ``(len(user_rows), k)``, best first.
        """
        self._check_fitted()
        k = check_k(k)
        user_rows = check_rows(user_rows, self.n_users_, "user")
        exclude = check_exclude(exclude, len(user_rows), self.n_items_)
        items = np.full((len(user_rows), k), -1, dtype=np.int64)
        scores = np.full((len(user_rows), k), -np.inf, dtype=np.float32)
        for start in range(0, len(user_rows), SCORE_BATCH):
            batch = slice(start, start + SCORE_BATCH)
            s = np.array(self._score_users(user_rows[batch]), dtype=np.float32)
            if exclude is not None:
                mask_scores(s, exclude[batch])
            items[batch], scores[batch] = top_k(s, k)
        return items, scores

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def rank(self, user_row: Any, item_rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank the candidate ``item_rows`` for the user ``user_row``, best first.

        Returns ``(item_rows_sorted, scores)``: the candidates sorted by this recipe's score for
        the user (the same score ``recommend`` uses), equal scores keeping the caller's order.
        Duplicated candidates collapse to one; rows outside the fitted catalogue raise
        ``ValueError`` (map new items to rows, or drop them, before calling). An empty list
        gives empty arrays. Known items are never removed: filtering is the caller's job.
        """
        self._check_fitted()
        user = check_user_row(user_row, self.n_users_)
        candidates = check_candidates(item_rows, self.n_items_)
        if candidates.size == 0:
            return candidates, np.zeros(0, dtype=np.float32)
        scores = np.asarray(self._score_users(user), dtype=np.float32)[0, candidates]
        return order_by_score(candidates, scores)

    def similar_items(self, item_rows: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items most similar to each of ``item_rows`` (never the item itself)."""
        if not hasattr(self, "_score_similar"):
            raise NotImplementedError(
                f"The {self.name!r} recipe does not support similar_items; use item-knn, ease, "
                "user-personalization, frequently-bought-together or content-based."
            )
        self._check_fitted()
        k = check_k(k)
        item_rows = check_rows(item_rows, self.n_items_, "item")
        items = np.full((len(item_rows), k), -1, dtype=np.int64)
        scores = np.full((len(item_rows), k), -np.inf, dtype=np.float32)
        for start in range(0, len(item_rows), SCORE_BATCH):
            rows = item_rows[start : start + SCORE_BATCH]
            s = np.array(self._score_similar(rows), dtype=np.float32)
            s[np.arange(len(rows)), rows] = -np.inf
            items[start : start + len(rows)], scores[start : start + len(rows)] = top_k(s, k)
        return items, scores

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write parameters and learned state to one ``.npz`` file (no pickle); returns path."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        sparse: list[str] = []
        for attr in ("n_users_", "n_items_", *self._learned):
            value = getattr(self, attr)
            if sp.issparse(value):
                value = sp.csr_matrix(value)
                sparse.append(attr)
                for part in _SPARSE_SUFFIXES:
                    arrays[f"{attr}.{part}"] = np.asarray(getattr(value, part))
            elif isinstance(value, np.ndarray):
                if value.dtype == object:
                    value = value.astype(str)
                arrays[attr] = value
            else:
                scalars[attr] = _to_json(value)
        meta = {
            "format_version": FORMAT_VERSION,
            "recipe": self.name,
            "params": {k: _to_json(v) for k, v in self.get_params().items()},
            "scalars": scalars,
            "sparse": sparse,
        }
        arrays[_META_KEY] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Load an artefact written by ``save``. Called on ``Recipe`` it picks the right class."""
        with np.load(Path(path), allow_pickle=False) as data:
            if _META_KEY not in data:
                raise ValueError(f"{path} is not a recipe artefact (no {_META_KEY} entry).")
            meta = json.loads(str(data[_META_KEY]))
            target = cls
            if cls is Recipe or cls.name != meta["recipe"]:
                from models_app.recipes import get_recipe

                target = get_recipe(meta["recipe"])
                if cls is not Recipe and not issubclass(target, cls):
                    raise ValueError(
                        f"{path} holds a {meta['recipe']!r} model, not a {cls.name!r} one."
                    )
            model = target(**meta["params"])
            for attr, value in meta["scalars"].items():
                setattr(model, attr, value)
            for attr in meta["sparse"]:
                parts = {p: data[f"{attr}.{p}"] for p in _SPARSE_SUFFIXES}
                setattr(
                    model,
                    attr,
                    sp.csr_matrix(
                        (parts["data"], parts["indices"], parts["indptr"]),
                        shape=tuple(int(s) for s in parts["shape"]),
                    ),
                )
            for key in data.files:
                if key != _META_KEY and "." not in key:
                    setattr(model, key, data[key])
        model.n_users_, model.n_items_ = int(model.n_users_), int(model.n_items_)
        model._after_load()
        return model

    def _after_load(self) -> None:
        """Hook to rebuild derived (unsaved) state after ``load``."""


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value
