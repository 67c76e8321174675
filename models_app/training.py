"""The training pipeline, free of Django: event arrays in, a fitted recipe and metrics out.

>>> result = train(recipe="item-knn", params={}, users=u, items=i, timestamps=t, event_types=e)
>>> result.recipe.recommend(rows, k=10)

``users`` / ``items`` are any integer ids (database keys); they are mapped to compact rows and
columns here, and ``result.user_ids`` / ``result.item_ids`` map them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models_app.evaluation.harness import evaluate_recipe
from models_app.evaluation.splits import Split, personalize_split
from models_app.recipes import Recipe, aggregate_events, get_recipe

MIN_INTERACTIONS = 1_000
MIN_USERS_WITH_TWO = 25
EVAL_KS = (5, 10, 25)
SPLIT_SEED = 42


class TrainingCancelled(Exception):
    pass


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


def train(
    *,
    recipe: str,
    params: dict[str, Any] | None,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    event_types: np.ndarray | None = None,
    log: Callable[[str, float], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    seed: int = SPLIT_SEED,
) -> TrainingResult:
    """Evaluate ``recipe`` on a Personalize-style split, then refit it on all the events.

    ``log(message, fraction)`` is called between steps; ``check_cancel()`` too, and may raise
    (for example :class:`TrainingCancelled`) to stop.
    """
    log = log or (lambda message, fraction: None)
    check_cancel = check_cancel or (lambda: None)
    make_recipe(recipe, params)  # fail early on bad parameters
    users = np.asarray(users)
    items = np.asarray(items)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    check_enough_data(users)

    user_ids, user_rows = np.unique(users, return_inverse=True)
    item_ids, item_rows = np.unique(items, return_inverse=True)
    shape = (len(user_ids), len(item_ids))
    types = None if event_types is None else np.asarray(event_types, dtype=object)
    log(
        f"{len(users):,} interactions, {shape[0]:,} users, {shape[1]:,} items.",
        0.05,
    )
    check_cancel()

    split = personalize_split(user_rows, item_rows, timestamps, *shape, seed=seed)
    test = split.test.tocoo()
    held_out = np.isin(user_rows * np.int64(shape[1]) + item_rows,
                       test.row.astype(np.int64) * shape[1] + test.col)  # fmt: skip
    keep = ~held_out
    X_train, train_kwargs = aggregate_events(
        user_rows[keep],
        item_rows[keep],
        shape,
        timestamps=timestamps[keep],
        event_types=None if types is None else types[keep],
    )
    log(
        f"Evaluation split: {int(split.test.nnz):,} newest interactions of "
        f"{len(split.users_with('test')):,} users held out.",
        0.1,
    )
    check_cancel()

    started = time.perf_counter()
    eval_split = Split(train=X_train, valid=split.valid, test=split.test)
    metrics = evaluate_recipe(
        lambda: make_recipe(recipe, params), eval_split, k=max(EVAL_KS), ks=EVAL_KS,
        **train_kwargs,
    )  # fmt: skip
    eval_seconds = time.perf_counter() - started
    log(
        f"Evaluated in {eval_seconds:.1f} s: NDCG@10 {metrics.get('ndcg@10', 0):.4f}, "
        f"recall@10 {metrics.get('recall@10', 0):.4f}, "
        f"coverage@10 {metrics.get('coverage@10', 0):.3f}.",
        0.5,
    )
    check_cancel()

    X, fit_kwargs = aggregate_events(
        user_rows, item_rows, shape, timestamps=timestamps, event_types=types
    )
    model = make_recipe(recipe, params)
    started = time.perf_counter()
    model.fit(X, **fit_kwargs)
    fit_seconds = time.perf_counter() - started
    log(f"Fitted on all {X.nnz:,} user-item pairs in {fit_seconds:.1f} s.", 0.9)
    check_cancel()
    return TrainingResult(
        recipe=model,
        user_ids=user_ids,
        item_ids=item_ids,
        metrics={k: float(v) for k, v in metrics.items()},
        n_interactions=len(users),
        fit_seconds=fit_seconds,
        timings={"evaluate_seconds": eval_seconds, "fit_seconds": fit_seconds},
    )
