"""Fit a recipe on a split and score its top-k lists.

Django-free. A "recipe" here is any object with

- ``fit(X) -> self`` where ``X`` is the binary users × items CSR training matrix, and
- ``recommend(user_rows, k, exclude=csr) -> (item_rows, scores)``, ``item_rows`` an integer
  array (len(user_rows), <= k) of item rows, best first, ``-1`` for padding; ``exclude`` is a
  CSR matrix with one row per requested user whose non-zeros must not be recommended.

It does not depend on ``models_app.recipes``; the product's recipes satisfy it, and so do the
peer models in ``benchmarks/peers.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from .metrics import evaluate_rankings
from .splits import Split

__all__ = ["evaluate_recipe", "recommend_all"]

DEFAULT_KS = (5, 10, 25)


def evaluate_recipe(
    recipe_factory: Callable[[], object],
    split: Split,
    k: int = 25,
    *,
    phase: str = "test",
    ks=None,
    batch_size: int = 1024,
    item_features=None,
    **fit_kwargs,
) -> dict[str, float]:
    """Fit ``recipe_factory()`` on ``split.train`` and evaluate its top-``k`` lists.

    Parameters
    ----------
    recipe_factory:
        Zero-argument callable returning an unfitted recipe (a class works).
    split:
        A :class:`~models_app.evaluation.splits.Split`.
    k:
        Length of the lists requested from the recipe.
    phase:
        ``"test"`` (default): score on ``split.test``, masking each user's train **and** valid
        items. ``"valid"``: score on ``split.valid``, masking train items only (for tuning).
    ks:
        Cut-offs for the metrics; default: those of (5, 10, 25) not above ``k``, plus ``k``.
    fit_kwargs:
        Passed to ``recipe.fit(split.train, **fit_kwargs)``.

    The model is always fitted on ``split.train`` only, in both phases. That is the choice of
    the "peers run here" table in BENCHMARKS.md (RecBole likewise trains on train only and uses
    valid for early stopping/tuning); refitting on train + valid before the test phase would
    give somewhat higher numbers and would not compare with that table.

    Returns the dict of :func:`~models_app.evaluation.metrics.evaluate_rankings` plus
    ``fit_seconds`` and ``recommend_seconds``.
    """
    if phase not in ("test", "valid"):
        raise ValueError(f'phase must be "test" or "valid", got {phase!r}.')
    if ks is None:
        ks = tuple(sorted({c for c in DEFAULT_KS if c <= k} | {k}))
    target = split.test if phase == "test" else split.valid
    exclude = split.train + split.valid if phase == "test" else split.train
    exclude = sp.csr_matrix(exclude)

    recipe = recipe_factory()
    started = time.perf_counter()
    fitted = recipe.fit(split.train, **fit_kwargs)
    fit_seconds = time.perf_counter() - started
    recipe = fitted if fitted is not None else recipe

    users = np.flatnonzero(np.diff(sp.csr_matrix(target).indptr) > 0)
    started = time.perf_counter()
    lists = recommend_all(recipe, users, k, exclude, n_users=target.shape[0], batch_size=batch_size)
    recommend_seconds = time.perf_counter() - started

    metrics = evaluate_rankings(lists, target, split.train, ks=ks, item_features=item_features)
    metrics["fit_seconds"] = fit_seconds
    metrics["recommend_seconds"] = recommend_seconds
    return metrics


def recommend_all(recipe, users, k: int, exclude, *, n_users: int, batch_size: int = 1024):
    """Top-``k`` lists for ``users`` as an (n_users, k) array, ``-1`` for everyone else.

    Calls ``recipe.recommend`` in batches of ``batch_size`` users, passing the rows of
    ``exclude`` for those users, and checks that no excluded item came back.
    """
    exclude = sp.csr_matrix(exclude)
    lists = np.full((n_users, k), -1, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        batch = np.asarray(users[start : start + batch_size])
        mask = exclude[batch]
        item_rows, _scores = recipe.recommend(batch, k, exclude=mask)
        item_rows = np.asarray(item_rows, dtype=np.int64)
        if item_rows.ndim != 2 or item_rows.shape[0] != len(batch) or item_rows.shape[1] > k:
            raise ValueError(
                f"recommend returned item rows of shape {item_rows.shape} for {len(batch)} users "
                f"and k={k}; expected ({len(batch)}, <= {k})."
            )
        rows = np.repeat(np.arange(len(batch)), item_rows.shape[1])
        flat = item_rows.ravel()
        real = flat >= 0
        if real.any() and np.asarray(mask[rows[real], flat[real]]).any():
            raise ValueError("recommend returned items that were passed in exclude.")
        lists[batch, : item_rows.shape[1]] = item_rows
    return lists
