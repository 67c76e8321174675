"""Recipe registry: every recommender recipe, by name, behind one protocol (see ``base.py``).

>>> from models_app.recipes import get_recipe, available_recipes
>>> model = get_recipe("ease")(l2=300).fit(X)
>>> items, scores = model.recommend(user_rows, k=10, exclude=X[user_rows])
>>> ranked, scores = model.rank(user_row, candidate_item_rows)  # any recipe re-ranks

This package must stay free of Django.
"""

from __future__ import annotations

from typing import Any

from models_app.recipes.als import ALSRecipe
from models_app.recipes.base import Recipe, aggregate_events, top_k
from models_app.recipes.content import ContentBased
from models_app.recipes.cooccurrence import FrequentlyBoughtTogether
from models_app.recipes.ease import EASE
from models_app.recipes.item_knn import ItemKNN
from models_app.recipes.popularity import PopularityCount
from models_app.recipes.ranking import PersonalizedRanking
from models_app.recipes.segment_affinity import SegmentAffinity
from models_app.recipes.trending import TrendingNow

RECIPES: dict[str, type[Recipe]] = {
    cls.name: cls
    for cls in (
        PopularityCount,
        TrendingNow,
        EASE,
        ItemKNN,
        ALSRecipe,
        PersonalizedRanking,
        FrequentlyBoughtTogether,
        ContentBased,
        SegmentAffinity,
    )
}


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered under ``name``; ``KeyError`` listing valid names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(
            f"Unknown recipe {name!r}. Valid recipes: {', '.join(sorted(RECIPES))}."
        ) from None


def available_recipes() -> list[dict[str, Any]]:
    """One entry per recipe: name, one-line description, and each parameter's default and doc."""
    out = []
    for name in sorted(RECIPES):
        cls = RECIPES[name]
        defaults = cls.default_params()
        out.append(
            {
                "name": name,
                "description": cls.description,
                "supports_similar_items": hasattr(cls, "_score_similar"),
                "parameters": {
                    p: {"default": defaults[p], "doc": cls.param_docs.get(p, "")} for p in defaults
                },
            }
        )
    return out


__all__ = [
    "RECIPES",
    "Recipe",
    "aggregate_events",
    "available_recipes",
    "get_recipe",
    "top_k",
]
