"""AutoML: try several recipes and parameter settings, keep the best by a chosen metric.

Django-free. :func:`plan_trials` draws the candidates (each recipe's defaults first, then a
seeded random sample of its small grid in :data:`SEARCH_SPACES`), :func:`run_search` scores
them with a callback and marks the best. ``models_app.training`` supplies the callback: fit on
a validation split carved from the training part only, score on its held-out part.

>>> config = AutoMLConfig.from_params({"metric": "recall@10", "max_trials": 6})
>>> trials = run_search(config, score, n_items=2465)
>>> best = next(t for t in trials if t.chosen)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models_app.recipes import RECIPES, get_recipe

AUTOML = "automl"

# Offered in the train form; any of ALLOWED_METRICS works from the API and command line.
FORM_METRICS = ("ndcg@10", "recall@10", "precision@10", "mrr@25", "hit@10", "coverage@10")
ALLOWED_METRICS = tuple(
    [
        f"{name}@{k}"
        for name in ("ndcg", "recall", "precision", "hit", "coverage")
        for k in (5, 10, 25)
    ]
    + ["mrr@25"]
)
DEFAULT_RECIPES = ("user-personalization", "ease", "item-knn", "popularity-count")
DEFAULTS: dict[str, Any] = {
    "metric": "ndcg@10",
    "recipes": list(DEFAULT_RECIPES),
    "max_trials": 12,
    "seed": 0,
}
MAX_TRIALS_LIMIT = 100

# Small grids, robust across data sizes (values a practitioner would try first). Each recipe's
# own defaults are always tried first; these give the other candidates. Parameters left out keep
# the recipe's defaults.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "user-personalization": {
        "factors": [32, 64, 128],
        "regularization": [5.0, 20.0, 50.0],
    },
    "ease": {"l2": [50.0, 250.0, 1000.0]},
    "item-knn": {"n_neighbors": [20, 50, 100, 200], "shrinkage": [0.0, 10.0, 50.0]},
    "popularity-count": {},
    "trending-now": {"trend_window": ["1h", "1d"], "smoothing": [1.0, 5.0, 20.0]},
    "frequently-bought-together": {"min_support": [1, 3, 5], "metric": ["lift", "confidence"]},
    "content-based": {"category_weight": [0.5, 1.0, 2.0]},
}


@dataclass(frozen=True)
class AutoMLConfig:
    metric: str
    recipes: tuple[str, ...]
    max_trials: int
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> AutoMLConfig:
        """The validated configuration, or ``ValueError`` saying what to fix."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValueError(
                'AutoML parameters must be a JSON object such as {"metric": "ndcg@10"}, got '
                f"{type(params).__name__}."
            )
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise ValueError(
                f"AutoML has no parameter {', '.join(map(repr, unknown))}; valid parameters: "
                f"{', '.join(DEFAULTS)}."
            )
        values = {**DEFAULTS, **params}
        metric = values["metric"]
        if metric not in ALLOWED_METRICS:
            raise ValueError(
                f"AutoML cannot optimise {metric!r}; choose one of {', '.join(ALLOWED_METRICS)}."
            )
        recipes = values["recipes"]
        if isinstance(recipes, str):
            recipes = [r.strip() for r in recipes.split(",") if r.strip()]
        if not isinstance(recipes, list | tuple) or not recipes:
            raise ValueError(
                'AutoML "recipes" must be a non-empty list of recipe names, e.g. '
                f'["item-knn", "ease"]; got {recipes!r}.'
            )
        for name in recipes:
            if name == AUTOML:
                raise ValueError('AutoML "recipes" cannot contain "automl" itself.')
            if not isinstance(name, str) or name not in RECIPES:
                raise ValueError(
                    f'AutoML "recipes" lists an unknown recipe {name!r}. Valid recipes: '
                    f"{', '.join(sorted(RECIPES))}."
                )
        if len(set(recipes)) != len(recipes):
            raise ValueError(f'AutoML "recipes" lists a recipe twice: {list(recipes)}.')
        max_trials = values["max_trials"]
        if (
            isinstance(max_trials, bool)
            or not isinstance(max_trials, int)
            or not 1 <= max_trials <= MAX_TRIALS_LIMIT
        ):
            raise ValueError(
                f'AutoML "max_trials" must be a whole number from 1 to {MAX_TRIALS_LIMIT}, got '
                f"{max_trials!r}."
            )
        seed = values["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f'AutoML "seed" must be a non-negative whole number, got {seed!r}.')
        return cls(metric=metric, recipes=tuple(recipes), max_trials=max_trials, seed=seed)

    def as_params(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "recipes": list(self.recipes),
            "max_trials": self.max_trials,
            "seed": self.seed,
        }

    @property
    def uses_item_features(self) -> bool:
        return "content-based" in self.recipes


@dataclass
class Trial:
    recipe: str
    params: dict[str, Any]
    value: float | None = None
    seconds: float = 0.0
    chosen: bool = False
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self, metric: str) -> dict[str, Any]:
        out = {
            "recipe": self.recipe,
            "params": self.params,
            "metric": metric,
            "value": self.value,
            "seconds": round(self.seconds, 3),
            "chosen": self.chosen,
        }
        if self.error:
            out["error"] = self.error
        return out


def ease_limit(params: dict[str, Any]) -> int:
    return int(params.get("max_items", get_recipe("ease").default_params()["max_items"]))


def plan_trials(config: AutoMLConfig, n_items: int) -> tuple[list[Trial], list[str]]:
    """``(trials to run, notes)``: each runnable recipe's defaults first (in the order given),
    then random grid points taken in turn from each recipe until ``max_trials``.

    EASE is left out (with a note) when the catalogue has more items than its ``max_items``.
    """
    rng = np.random.default_rng(config.seed)
    notes = []
    recipes = []
    for name in config.recipes:
        if name == "ease" and n_items > ease_limit({}):
            notes.append(
                f"Skipping ease: the catalogue has {n_items:,} items, above its max_items "
                f"({ease_limit({}):,}); the dense inversion would be too slow and large."
            )
            continue
        recipes.append(name)
    if not recipes:
        raise ValueError(
            "AutoML has no recipe it can run on this data "
            f"({', '.join(config.recipes)}); add item-knn or user-personalization."
        )
    if config.max_trials < len(recipes):
        notes.append(
            f"max_trials={config.max_trials} is below the number of recipes; not trying "
            f"{', '.join(recipes[config.max_trials :])}."
        )
    pools: dict[str, list[dict[str, Any]]] = {}
    for name in recipes:
        space = SEARCH_SPACES.get(name, {})
        keys = sorted(space)
        defaults = get_recipe(name).default_params()
        points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(
            *(space[k] for k in keys)
        )]  # fmt: skip
        # The defaults are tried first anyway; drop the grid point equal to them.
        points = [p for p in points if any(defaults.get(k) != v for k, v in p.items())]
        pools[name] = [points[i] for i in rng.permutation(len(points))]
    trials = [Trial(name, {}) for name in recipes[: config.max_trials]]
    while len(trials) < config.max_trials and any(pools.values()):
        for name in recipes:
            if pools[name] and len(trials) < config.max_trials:
                trials.append(Trial(name, pools[name].pop(0)))
    return trials, notes


def score_trial(score: Callable[[str, dict], dict[str, float]], trial: Trial) -> dict[str, float]:
    """One evaluation (a seam for tests)."""
    return score(trial.recipe, trial.params)


def run_search(
    config: AutoMLConfig,
    score: Callable[[str, dict], dict[str, float]],
    *,
    n_items: int,
    log: Callable[[str, float], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    progress: tuple[float, float] = (0.0, 1.0),
) -> list[Trial]:
    """Score every planned trial and mark the best; returns all trials (``chosen`` on one).

    ``score(recipe, params)`` returns the validation metrics. A trial whose recipe fails on this
    data (``ValueError``, e.g. content-based without item attributes) is recorded with its error
    and the search goes on. ``check_cancel()`` runs before each trial and may raise to stop.
    """
    log = log or (lambda message, fraction: None)
    check_cancel = check_cancel or (lambda: None)
    trials, notes = plan_trials(config, n_items)
    low, high = progress
    for note in notes:
        log(note, low)
    log(
        f"AutoML: {len(trials)} trials over {', '.join(dict.fromkeys(t.recipe for t in trials))}, "
        f"best {config.metric} on the validation split wins.",
        low,
    )
    for number, trial in enumerate(trials, start=1):
        check_cancel()
        started = time.perf_counter()
        try:
            metrics = score_trial(score, trial)
        except (ValueError, np.linalg.LinAlgError, MemoryError) as exc:
            trial.error = str(exc) or type(exc).__name__
        else:
            trial.metrics = {k: float(v) for k, v in metrics.items()}
            trial.value = float(metrics[config.metric])
        trial.seconds = time.perf_counter() - started
        result = (
            f"{config.metric} {trial.value:.4f}" if trial.error == "" else f"failed: {trial.error}"
        )
        log(
            f"Trial {number}/{len(trials)}: {trial.recipe} {trial.params or '(defaults)'}: "
            f"{result} ({trial.seconds:.1f} s).",
            low + (high - low) * number / len(trials),
        )
    check_cancel()
    scored = [t for t in trials if t.value is not None]
    if not scored:
        errors = "; ".join(f"{t.recipe}: {t.error}" for t in trials)
        raise ValueError(f"Every AutoML trial failed, so there is nothing to keep ({errors}).")
    # Highest value wins; on a tie the earlier trial (defaults come first) is kept.
    best = max(scored, key=lambda t: (t.value, -trials.index(t)))
    best.chosen = True
    log(
        f"AutoML chose {best.recipe} {best.params or '(defaults)'}: validation "
        f"{config.metric} {best.value:.4f}.",
        high,
    )
    return trials
