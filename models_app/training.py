"""The training pipeline, free of Django: event arrays in, a fitted recipe and metrics out.

>>> result = train(recipe="item-knn", params={}, users=u, items=i, timestamps=t, event_types=e)
>>> result.recipe.recommend(rows, k=10)

``users`` / ``items`` are any integer ids (database keys); they are mapped to compact rows and
columns here, and ``result.user_ids`` / ``result.item_ids`` map them back.

A run evaluates the recipe twice, each time fitted on a training part only: on Amazon
Personalize's split (the newest 10% of the interactions of a random 10% of users held out; plain
metric keys such as ``ndcg@10``) and on Protocol R of BENCHMARKS.md (a random 80/10/10 split per
user; keys prefixed ``r:``). It then refits on every event. Besides the matrix, every fit gets
the side inputs restricted to the events it may see: ``item_features`` (one row per item
column), ``sessions`` (CSR sessions x items), ``impressions`` (times each item was shown) and
``now`` (the latest timestamp). Recipes ignore the keywords they do not use.

``recipe="automl"`` first searches recipes and parameters (``models_app.automl``) on a
validation split carved from the events that both evaluations train on, then treats the winner
like any recipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models_app import automl
from models_app.evaluation.harness import evaluate_recipe
from models_app.evaluation.splits import Split, personalize_split, protocol_r_split
from models_app.recipes import Recipe, aggregate_events, get_recipe

MIN_INTERACTIONS = 1_000
MIN_USERS_WITH_TWO = 25
EVAL_KS = (5, 10, 25)
SPLIT_SEED = 42
PROTOCOL_R_PREFIX = "r:"
# AutoML's validation split: the newest 10% of the interactions of this share of users.
VALIDATION_USER_SHARE = 0.2
# Recipes that can use items nobody has interacted with yet (catalogue items become columns).
CATALOG_RECIPES = frozenset({"content-based"})


class TrainingCancelled(Exception):
    pass


def check_recipe(name: str, params: dict[str, Any] | None) -> None:
    """``ValueError`` saying what is wrong with a solution's recipe name or parameters
    (``automl`` included); run before anything is queued."""
    if name == automl.AUTOML:
        automl.AutoMLConfig.from_params(params)
    else:
        make_recipe(name, params)


def make_recipe(name: str, params: dict[str, Any] | None) -> Recipe:
    """An unfitted recipe, or ``ValueError`` saying what is wrong with the name or parameters."""
    try:
        cls = get_recipe(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(
            f'Parameters must be a JSON object such as {{"factors": 64}}, got '
            f"{type(params).__name__}."
        )
    valid = cls.default_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"The {name!r} recipe has no parameter {', '.join(map(repr, unknown))}; valid "
            f"parameters: {', '.join(valid) or 'none'}."
        )
    for key, value in params.items():
        expected = _expected_type(valid[key])
        if expected is not None and not _has_type(value, expected):
            raise ValueError(
                f"Parameter {key!r} of {name!r} must be {expected.__name__} like its default "
                f"{valid[key]!r}, got {value!r}."
            )
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Invalid parameters for {name!r}: {exc}") from None


def _expected_type(default: Any) -> type | None:
    """The type a parameter must have, from its default (None: anything goes)."""
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    return None


def _has_type(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int in Python, never a number here
        return False
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def check_enough_data(users: np.ndarray, items: np.ndarray | None = None) -> None:
    """``ValueError`` unless there are enough interactions and repeat users to learn and test."""
    n = len(users)
    if n < MIN_INTERACTIONS:
        raise ValueError(
            f"Not enough data to train: {n} interactions (at least {MIN_INTERACTIONS:,} are "
            "needed). Import more interactions, or include more event types."
        )
    _, counts = np.unique(users, return_counts=True)
    repeat = int((counts >= 2).sum())
    if repeat < MIN_USERS_WITH_TWO:
        raise ValueError(
            f"Not enough data to train: {repeat} users have two or more interactions (at least "
            f"{MIN_USERS_WITH_TWO} are needed to hold some out for evaluation)."
        )


@dataclass
class TrainingResult:
    recipe: Recipe
    user_ids: np.ndarray  # row -> user id
    item_ids: np.ndarray  # column -> item id
    metrics: dict[str, float]
    n_interactions: int
    fit_seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # AutoML: every candidate tried (dicts: recipe, params, metric, value, seconds, chosen).
    trials: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Impressions:
    """One entry per item shown: the user who saw it, the item of the event whose impression
    list it was in, and the shown item (ids, like ``users`` / ``items``)."""

    users: np.ndarray
    items: np.ndarray
    shown: np.ndarray


def uses_catalog(recipe: str, params: dict[str, Any] | None) -> bool:
    """Whether items known only from the catalogue (no events) become columns for ``recipe``."""
    if recipe == automl.AUTOML:
        return automl.AutoMLConfig.from_params(params).uses_item_features
    return recipe in CATALOG_RECIPES


class _Inputs:
    """The events mapped to rows and columns, and the side inputs of a fit on a subset of them."""

    def __init__(
        self, user_rows, item_rows, shape, timestamps, types, sessions, features, shown,
        user_features=None,
    ):  # fmt: skip
        self.user_rows, self.item_rows, self.shape = user_rows, item_rows, shape
        self.user_features = user_features  # DataFrame aligned with the rows, or None
        self.timestamps, self.types = timestamps, types
        self.cells = user_rows * np.int64(shape[1]) + item_rows
        self.sessions = sessions  # per event: session number, -1 for none
        self.features = features  # DataFrame aligned with the columns, or None
        self.shown = shown  # (event cell, shown column) per impression, or None

    def keep_cells(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Mask of the events whose (user, item) cell is a non-zero of ``matrix``."""
        coo = matrix.tocoo()
        keys = np.sort(coo.row.astype(np.int64) * self.shape[1] + coo.col)
        if not len(keys):
            return np.zeros(len(self.cells), dtype=bool)
        pos = np.minimum(np.searchsorted(keys, self.cells), len(keys) - 1)
        return keys[pos] == self.cells

    def fit_data(self, keep: np.ndarray | None = None) -> tuple[sp.csr_matrix, dict[str, Any]]:
        """``(X, fit_kwargs)`` from the events in ``keep`` (all when None); side inputs never
        include anything from the other events (their sessions, impressions, time)."""
        if keep is None:
            keep = np.ones(len(self.cells), dtype=bool)
        X, kwargs = aggregate_events(
            self.user_rows[keep],
            self.item_rows[keep],
            self.shape,
            timestamps=self.timestamps[keep],
            event_types=None if self.types is None else self.types[keep],
        )
        n_items = self.shape[1]
        kwargs["now"] = float(self.timestamps[keep].max())
        if self.features is not None:
            kwargs["item_features"] = self.features
        if self.user_features is not None:
            kwargs["user_features"] = self.user_features
        if self.sessions is not None:
            in_session = keep & (self.sessions >= 0)
            numbers, session_rows = np.unique(self.sessions[in_session], return_inverse=True)
            baskets = sp.csr_matrix(
                (
                    np.ones(len(session_rows), dtype=np.float32),
                    (session_rows, self.item_rows[in_session]),
                ),
                shape=(len(numbers), n_items),
            )
            baskets.sum_duplicates()
            baskets.data[:] = 1.0
            kwargs["sessions"] = baskets
        if self.shown is not None:
            event_cells, columns = self.shown
            held_out = np.unique(self.cells[~keep])
            if len(held_out):
                pos = np.minimum(np.searchsorted(held_out, event_cells), len(held_out) - 1)
                visible = held_out[pos] != event_cells
            else:
                visible = np.ones(len(columns), dtype=bool)
            kwargs["impressions"] = np.bincount(columns[visible], minlength=n_items).astype(
                np.float64
            )
        return X, kwargs


class _WithInputs:
    """A recipe that :func:`evaluate_recipe` fits with our side inputs. (The harness's own
    ``item_features`` argument feeds the diversity metric, not ``fit``.)"""

    def __init__(self, recipe: Recipe, fit_kwargs: dict[str, Any]):
        self.recipe, self.fit_kwargs = recipe, fit_kwargs

    def fit(self, X, **kwargs):
        return self.recipe.fit(X, **{**kwargs, **self.fit_kwargs})


def _require_attributes(recipe: str, features: pd.DataFrame | None) -> None:
    attributes = None if features is None else features.drop(columns="CREATION_TIMESTAMP")
    if attributes is None or attributes.dropna(how="all").empty:
        raise ValueError(
            f"{recipe} needs item attributes (text such as TITLE and DESCRIPTION, or a CATEGORY) "
            "and this project's items have none: import an items file first."
        )


def _evaluate(recipe, params, split: Split, fit_kwargs, phase: str = "test") -> dict[str, float]:
    if recipe in CATALOG_RECIPES:
        _require_attributes(recipe, fit_kwargs.get("item_features"))
    metrics = evaluate_recipe(
        lambda: _WithInputs(make_recipe(recipe, params), fit_kwargs),
        split, k=max(EVAL_KS), ks=EVAL_KS, phase=phase,
    )  # fmt: skip
    return {k: float(v) for k, v in metrics.items()}


def _summary(metrics: dict[str, float], prefix: str = "") -> str:
    return (
        f"NDCG@10 {metrics.get(prefix + 'ndcg@10', 0):.4f}, "
        f"recall@10 {metrics.get(prefix + 'recall@10', 0):.4f}, "
        f"coverage@10 {metrics.get(prefix + 'coverage@10', 0):.3f}"
    )


def train(
    *,
    recipe: str,
    params: dict[str, Any] | None,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    event_types: np.ndarray | None = None,
    sessions: np.ndarray | None = None,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    catalog_items: np.ndarray | None = None,
    impressions: Impressions | None = None,
    log: Callable[[str, float], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    seed: int = SPLIT_SEED,
) -> TrainingResult:
    """Evaluate ``recipe`` on Personalize's split and on Protocol R, then refit on all events.

    Optional side inputs (ids as in ``users`` / ``items``):

    - ``sessions``: per event, its session or order id (``""`` or None for none);
    - ``item_features``: a DataFrame indexed by item id (attribute columns, and
      ``CREATION_TIMESTAMP`` in float unix seconds); items it lacks get empty rows;
    - ``user_features``: a DataFrame indexed by user id (attribute columns such as a saved
      ``SEGMENT``); users it lacks get empty rows;
    - ``catalog_items``: item ids known from the catalogue; for recipes that can use items
      without events (:data:`CATALOG_RECIPES`) they become columns too;
    - ``impressions``: the items shown to users, see :class:`Impressions`.

    ``log(message, fraction)`` is called between steps; ``check_cancel()`` too, and may raise
    (for example :class:`TrainingCancelled`) to stop.
    """
    log = log or (lambda message, fraction: None)
    check_cancel = check_cancel or (lambda: None)
    check_recipe(recipe, params)  # fail early on bad parameters
    users = np.asarray(users)
    items = np.asarray(items)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    check_enough_data(users)

    user_ids, user_rows = np.unique(users, return_inverse=True)
    item_ids = np.unique(items)
    cold = 0
    if catalog_items is not None and uses_catalog(recipe, params):
        all_ids = np.union1d(item_ids, np.asarray(catalog_items, dtype=item_ids.dtype))
        cold, item_ids = len(all_ids) - len(item_ids), all_ids
    item_rows = np.searchsorted(item_ids, items)
    shape = (len(user_ids), len(item_ids))
    inputs = _Inputs(
        user_rows.astype(np.int64),
        item_rows.astype(np.int64),
        shape,
        timestamps,
        None if event_types is None else np.asarray(event_types, dtype=object),
        _session_numbers(sessions, len(users)),
        _align_features(item_features, item_ids),
        _impression_columns(impressions, user_ids, item_ids),
        None if user_features is None else user_features.reindex(user_ids).reset_index(drop=True),
    )
    n_sessions = 0 if inputs.sessions is None else int(inputs.sessions.max()) + 1
    log(
        f"{len(users):,} interactions, {shape[0]:,} users, {shape[1]:,} items"
        + (f" ({cold:,} of them from the catalogue only)" if cold else "")
        + f", {n_sessions:,} sessions.",
        0.05,
    )
    check_cancel()

    split = personalize_split(inputs.user_rows, inputs.item_rows, timestamps, *shape, seed=seed)
    keep_p = ~inputs.keep_cells(split.test)
    r_split = protocol_r_split(inputs.user_rows, inputs.item_rows, *shape, seed=seed)
    keep_r = inputs.keep_cells(r_split.train)
    log(
        f"Evaluation splits: Personalize holds out the {int(split.test.nnz):,} newest "
        f"interactions of {len(split.users_with('test')):,} users; Protocol R holds out "
        f"{int(r_split.valid.nnz):,} + {int(r_split.test.nnz):,} random interactions of "
        f"{len(r_split.users_with('test')):,} users.",
        0.08,
    )
    check_cancel()

    timings: dict[str, float] = {}
    trials: list[dict[str, Any]] = []
    chosen, chosen_params = recipe, params
    if recipe == automl.AUTOML:
        started = time.perf_counter()
        config = automl.AutoMLConfig.from_params(params)
        score = _validation_scorer(inputs, keep_p & keep_r, seed)
        found = automl.run_search(
            config, score, n_items=shape[1], log=log, check_cancel=check_cancel,
            progress=(0.1, 0.6),
        )  # fmt: skip
        best = next(t for t in found if t.chosen)
        chosen, chosen_params = best.recipe, dict(best.params)
        trials = [t.as_dict(config.metric) for t in found]
        timings["automl_seconds"] = time.perf_counter() - started
    low = 0.6 if recipe == automl.AUTOML else 0.1

    started = time.perf_counter()
    X_train, train_kwargs = inputs.fit_data(keep_p)
    metrics = _evaluate(
        chosen, chosen_params, Split(train=X_train, valid=split.valid, test=split.test),
        train_kwargs,
    )  # fmt: skip
    timings["evaluate_seconds"] = time.perf_counter() - started
    log(
        f"Personalize split evaluated in {timings['evaluate_seconds']:.1f} s: {_summary(metrics)}.",
        low + (0.85 - low) * 0.5,
    )
    check_cancel()

    started = time.perf_counter()
    X_r, r_kwargs = inputs.fit_data(keep_r)
    r_metrics = _evaluate(
        chosen, chosen_params, Split(train=X_r, valid=r_split.valid, test=r_split.test), r_kwargs
    )
    for key in ("fit_seconds", "recommend_seconds"):
        r_metrics.pop(key, None)
    metrics.update({PROTOCOL_R_PREFIX + k: v for k, v in r_metrics.items()})
    timings["r_evaluate_seconds"] = time.perf_counter() - started
    log(
        f"Protocol R evaluated in {timings['r_evaluate_seconds']:.1f} s: {_summary(r_metrics)}.",
        0.85,
    )
    check_cancel()

    X, fit_kwargs = inputs.fit_data()
    model = make_recipe(chosen, chosen_params)
    started = time.perf_counter()
    model.fit(X, **fit_kwargs)
    fit_seconds = time.perf_counter() - started
    timings["fit_seconds"] = fit_seconds
    log(f"Fitted on all {X.nnz:,} user-item pairs in {fit_seconds:.1f} s.", 0.9)
    check_cancel()
    return TrainingResult(
        recipe=model,
        user_ids=user_ids,
        item_ids=item_ids,
        metrics=metrics,
        n_interactions=len(users),
        fit_seconds=fit_seconds,
        timings=timings,
        trials=trials,
    )


def _validation_scorer(inputs: _Inputs, keep: np.ndarray, seed: int):
    """AutoML's ``score(recipe, params)``: fit on the events both evaluations train on, minus
    the newest 10% of the interactions of a random 20% of users, and score on those."""
    rows, cols = inputs.user_rows[keep], inputs.item_rows[keep]
    carved = personalize_split(
        rows, cols, inputs.timestamps[keep], *inputs.shape, seed=seed + 1,
        user_share=VALIDATION_USER_SHARE,
    )  # fmt: skip
    fit_keep = keep & ~inputs.keep_cells(carved.test)
    X, kwargs = inputs.fit_data(fit_keep)
    split = Split(train=X, valid=carved.test, test=carved.test)

    def score(recipe: str, params: dict[str, Any]) -> dict[str, float]:
        return _evaluate(recipe, params, split, kwargs, phase="valid")

    return score


def _session_numbers(sessions, n: int) -> np.ndarray | None:
    """Per event, a session number (-1 when the event has no session), or None."""
    if sessions is None:
        return None
    values = pd.Series(np.asarray(sessions, dtype=object))
    if len(values) != n:
        raise ValueError(f"sessions must have one entry per event ({n:,}), got {len(values):,}.")
    values = values.where(values.notna() & (values.astype(str) != ""))
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    if (codes >= 0).sum() == 0:
        return None
    return codes.astype(np.int64)


def _align_features(features: pd.DataFrame | None, item_ids: np.ndarray) -> pd.DataFrame | None:
    """One row per item column, in column order (missing items: empty values)."""
    if features is None:
        return None
    aligned = features.reindex(item_ids).reset_index(drop=True)
    if "CREATION_TIMESTAMP" in aligned.columns:
        aligned["CREATION_TIMESTAMP"] = pd.to_numeric(
            aligned["CREATION_TIMESTAMP"], errors="coerce"
        ).astype(np.float64)
    else:
        aligned["CREATION_TIMESTAMP"] = np.nan
    return aligned


def _impression_columns(impressions: Impressions | None, user_ids, item_ids):
    """``(event cell, shown column)`` per impression of a known user, item and shown item."""
    if impressions is None:
        return None
    users = np.asarray(impressions.users)
    items = np.asarray(impressions.items)
    shown = np.asarray(impressions.shown)
    if not len(shown):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    def rows_of(ids, known):
        pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        return pos, known[pos] == ids

    shown_col, ok = rows_of(shown, item_ids)
    # Impressions of events by users or on items outside the matrix (e.g. other event types)
    # still count as exposure; their event cell is -1 so no held-out cell ever hides them.
    user_row, user_ok = rows_of(users, user_ids)
    item_col, item_ok = rows_of(items, item_ids)
    cells = np.where(user_ok & item_ok, user_row * np.int64(len(item_ids)) + item_col, -1)
    return cells[ok].astype(np.int64), shown_col[ok].astype(np.int64)
