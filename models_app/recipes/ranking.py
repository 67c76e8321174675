"""personalized-ranking: re-rank a list of items the caller supplies, for one user.

It learns exactly like ``user-personalization`` (the same tuned iALS, same parameters, same
artefact layout: it is a subclass) and adds the ranking entry points serving needs:

* ``rank(user_row, item_rows)`` for a user the model knows (the generic ``Recipe.rank``, which
  every recipe has, scores with the user's trained vector);
* ``rank_for_items(history_item_rows, candidate_item_rows, weights=None)`` for a user the model
  does not know yet, or whose newest events should count: the user vector is folded in from
  their history against the fixed item factors, without retraining.

Candidates are validated (rows outside the fitted catalogue raise ``ValueError``), duplicates
collapse to their first occurrence, and equal scores keep the caller's order. Unlike
``recommend``, ranking never drops items the user already knows: the caller chose the list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models_app.recipes.als import ALSRecipe
from models_app.recipes.base import check_candidates, order_by_score


class PersonalizedRanking(ALSRecipe):
    name = "personalized-ranking"
    description = (
        "Re-ranks a caller-supplied list of items for a user (tuned iALS, fold-in for new users)."
    )

    def rank_for_items(
        self, history_item_rows: Any, candidate_item_rows: Any, weights: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank ``candidate_item_rows`` for a user described only by their events.

        ``history_item_rows``: items the user interacted with (repeats add up), ``weights``
        one weight per entry (default 1). An empty history gives every candidate score 0, so
        the caller's order is kept. Returns ``(item_rows_sorted, scores)``, best first.
        """
        self._check_fitted()
        candidates = check_candidates(candidate_item_rows, self.n_items_)
        _, vector = self._fold_in_items(history_item_rows, weights)
        if candidates.size == 0:
            return candidates, np.zeros(0, dtype=np.float32)
        scores = self.item_factors_[candidates] @ vector
        return order_by_score(candidates, scores)
