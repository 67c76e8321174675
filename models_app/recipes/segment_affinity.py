"""segment-affinity: behavioural user segments (k-means, k chosen by silhouette) and, per segment,
items ranked by their Bayesian-smoothed conversion toward a goal event (Amplitude style).

Fit:

1. per user with events, behavioural features from the interactions: events per (latest)
   event type, per item category (from ``item_features``), recency, active days, distinct
   items, plus chosen ``user_features`` columns;
2. segments from :func:`graphs.analysis.segment_users`: features filtered by their correlation
   with the user's goal count, scaled, outliers left out of the fit, k by silhouette;
3. per segment ``s`` and item ``i``: ``c_si`` users of the segment whose cell with the item
   reached the goal (its latest event is ``goal_event``), ``n_si`` users who interacted at
   all, ``N_s`` users in the segment, ``N`` users in all; ``m`` is ``prior_strength``.
   Both parts of a conversion are Bayesian-smoothed toward the whole population:

   * reach ``(n_si + m * n_i / N) / (N_s + m)``: the share of the segment who interact with
     the item, pulled toward the item's share among all users;
   * rate ``(c_si + m * r_i) / (n_si + m)``: the conversion rate of those who interacted
     (Amplitude's conditional rate), pulled toward the item's global rate
     ``r_i = (c_i + m * r) / (n_i + m)``, itself pulled toward the overall rate ``r``.

   ``score="conversions"`` (default) ranks by reach x rate, the chance that a member of the
   segment converts on the item; ``score="rate"`` by the rate alone.

A user is scored with their segment's ranking; users without events in the training data get
the whole population's ranking. Without the goal event in the data the recipe ranks by
interaction rate instead and says so in ``notes_``. This module must stay free of Django.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models_app.recipes.base import Recipe, check_per_entry, check_rows

SCORES = ("conversions", "rate")
# Categorical user fields with more distinct values than this are not one-hot encoded.
MAX_USER_FIELD_LEVELS = 30
# Weight of the interaction-share tie-breaker, far below any conversion difference.
TIE_BREAK = 1e-4


def _plain(value: Any) -> Any:
    """A JSON-safe copy (numpy scalars to Python, dict keys to str) for saving with the model."""
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


class SegmentAffinity(Recipe):
    name = "segment-affinity"
    description = (
        "Behavioural user segments (k-means, k by silhouette); per segment, items ranked by "
        "Bayesian-smoothed conversion toward a goal event."
    )
    param_docs = {
        "goal_event": "The event type that counts as a conversion, e.g. 'purchase'. When the "
        "data has no such events the recipe ranks by interaction rate and notes it.",
        "prior_strength": "Weight of the prior, in pseudo-users: an item's reach and conversion "
        "rate in a segment are pulled toward its global ones as if this many extra users had "
        "behaved like everyone. Larger values trust small segments and rare items less.",
        "score": "'conversions' ranks by the chance a segment member converts on the item "
        "(reach x conversion, the default); 'rate' by the conversion rate of the members who "
        "interacted with it (favours items that convert well once seen, however few saw them).",
        "n_segments": "Fixed number of segments; None chooses k in k_min..k_max by silhouette.",
        "k_min": "Smallest k tried when n_segments is None.",
        "k_max": "Largest k tried when n_segments is None.",
        "min_abs_corr": "Keep behavioural features whose |Spearman correlation| with the user's "
        "goal count is at least this (low on purpose: it drops only unrelated features).",
        "min_features": "Always keep at least this many features (the best-correlated).",
        "outlier_share": "Share of the most isolated users (isolation forest) left out of the "
        "k-means fit; they still get the segment nearest to them. 0 turns it off.",
        "category_field": "Item field holding the category ('Shoes|Running' counts for both), "
        "matched case-insensitively; its events per category describe the user's taste.",
        "user_fields": "User attribute columns added to the features (numeric as they are, "
        "categorical one-hot); None uses the numeric columns of user_features, if given.",
        "silhouette_sample": "Above this many users, silhouette is computed on a seeded sample.",
        "seed": "Random seed for k-means, outlier detection and silhouette sampling.",
    }
    _learned = (
        "user_segment_",
        "segment_scores_",
        "global_scores_",
        "segment_sizes_",
        "silhouette_by_k_",
        "features_",
        "goal_found_",
        "notes_",
        "report_",
    )

    def __init__(
        self,
        *,
        goal_event: str = "purchase",
        prior_strength: float = 10.0,
        score: str = "conversions",
        n_segments: int | None = None,
        k_min: int = 2,
        k_max: int = 10,
        min_abs_corr: float = 0.05,
        min_features: int = 3,
        outlier_share: float = 0.02,
        category_field: str = "category",
        user_fields: list[str] | None = None,
        silhouette_sample: int = 2000,
        seed: int = 0,
    ):
        self.goal_event = goal_event
        self.prior_strength = prior_strength
        self.score = score
        self.n_segments = n_segments
        self.k_min = k_min
        self.k_max = k_max
        self.min_abs_corr = min_abs_corr
        self.min_features = min_features
        self.outlier_share = outlier_share
        self.category_field = category_field
        self.user_fields = user_fields
        self.silhouette_sample = silhouette_sample
        self.seed = seed

    # -- fitting -------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}.")
        if not float(self.prior_strength) >= 0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength!r}.")
        if self.n_segments is None and not 2 <= int(self.k_min) <= int(self.k_max):
            raise ValueError(
                f"k_min and k_max must satisfy 2 <= k_min <= k_max, got {self.k_min}, {self.k_max}."
            )

    def _k_values(self) -> list[int]:
        if self.n_segments is not None:
            return [int(self.n_segments)]
        return list(range(int(self.k_min), int(self.k_max) + 1))

    def _categories(self, item_features: Any, n_items: int, notes: list[str]):
        if item_features is None:
            notes.append("no item_features: users are described by activity only, not taste")
            return None
        frame = item_features if isinstance(item_features, pd.DataFrame) else None
        if frame is None:
            frame = pd.DataFrame(item_features)
        if len(frame) != n_items:
            raise ValueError(
                f"item_features has {len(frame)} rows but the matrix has {n_items} items; give "
                "one row per item, in item-row order."
            )
        columns = {str(c).lower(): c for c in frame.columns}
        column = columns.get(str(self.category_field).lower())
        if column is None:
            notes.append(
                f"item_features has no {self.category_field!r} field (columns: "
                f"{list(frame.columns)}): users are described by activity only"
            )
            return None
        return frame[column].fillna("").astype(str).to_numpy()

    def _user_block(self, user_features: Any, n_users: int, active: np.ndarray, notes: list):
        if user_features is None:
            if self.user_fields:
                raise ValueError(
                    f"user_fields {list(self.user_fields)} is set but fit() got no "
                    "user_features; pass user_features=DataFrame (one row per user row)."
                )
            return None
        frame = user_features if isinstance(user_features, pd.DataFrame) else None
        if frame is None:
            frame = pd.DataFrame(user_features)
        if len(frame) != n_users:
            raise ValueError(
                f"user_features has {len(frame)} rows but the matrix has {n_users} users; give "
                "one row per user, in user-row order."
            )
        frame = frame.reset_index(drop=True).iloc[active]
        columns = {str(c).lower(): c for c in frame.columns}
        if self.user_fields is None:
            chosen = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
            chosen = [c for c in chosen if str(c).upper() not in ("USER_ID", "USER_ROW")]
        else:
            missing = [f for f in self.user_fields if str(f).lower() not in columns]
            if missing:
                raise ValueError(
                    f"user_fields {missing} are not in user_features (columns: "
                    f"{list(frame.columns)})."
                )
            chosen = [columns[str(f).lower()] for f in self.user_fields]
        blocks = []
        for column in chosen:
            values = frame[column]
            if pd.api.types.is_numeric_dtype(values):
                blocks.append(pd.DataFrame({f"user:{column}": values.astype(float).to_numpy()}))
            elif values.nunique() <= MAX_USER_FIELD_LEVELS:
                dummies = pd.get_dummies(values.fillna("").astype(str), prefix=f"user:{column}")
                blocks.append(dummies.astype(float).reset_index(drop=True))
            else:
                notes.append(
                    f"user field {column!r} has {values.nunique()} distinct values (more than "
                    f"{MAX_USER_FIELD_LEVELS}) and was not used"
                )
        if not blocks:
            return None
        return pd.concat(blocks, axis=1).set_axis(active, axis=0)

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        self._check_params()
        n_users, n_items = X.shape
        notes: list[str] = []
        types = check_per_entry(kwargs.get("event_types"), X, "event_types", dtype=object)
        timestamps = check_per_entry(kwargs.get("timestamps"), X, "timestamps", dtype=float)
        per_user = np.diff(X.indptr)
        rows = np.repeat(np.arange(n_users), per_user)
        active = np.flatnonzero(per_user > 0)

        goal = str(self.goal_event)
        if types is None:
            converted = None
            notes.append(
                f"no event_types given, so the goal event {goal!r} cannot be seen: items are "
                "ranked by interaction rate instead of conversion"
            )
        else:
            types = types.astype(str)
            converted = types == goal
            if not converted.any():
                found = sorted(set(types.tolist()))[:10]
                notes.append(
                    f"the goal event {goal!r} does not occur in the data (event types: {found}): "
                    "items are ranked by interaction rate instead of conversion"
                )
                converted = None
        self.goal_found_ = converted is not None

        # Imported here: networkx, python-louvain and sklearn.cluster cost ~1.4 s to load,
        # which every process that only serves other recipes would pay at registry import.
        from graphs.analysis.clustering import behavioural_features, segment_users

        frame = behavioural_features(
            rows,
            X.indices,
            types,
            weights=X.data,
            timestamps=timestamps,
            item_categories=self._categories(kwargs.get("item_features"), n_items, notes),
            now=kwargs.get("now"),
            user_ids=active,
        )
        extra = self._user_block(kwargs.get("user_features"), n_users, active, notes)
        if extra is not None:
            frame = frame.join(extra)
        goal_count = None
        if converted is not None:
            goal_count = np.bincount(rows[converted], minlength=n_users)[active]
        segmentation = segment_users(
            frame,
            goal_count,
            k_values=self._k_values(),
            min_abs_corr=float(self.min_abs_corr),
            min_features=int(self.min_features),
            outlier_share=float(self.outlier_share),
            silhouette_sample=int(self.silhouette_sample),
            seed=int(self.seed),
        )
        n_segments = int(segmentation.k)
        segment = np.full(n_users, -1, dtype=np.int64)
        segment[active] = segmentation.labels.to_numpy()
        self.user_segment_ = segment
        self.segment_sizes_ = np.bincount(segment[active], minlength=n_segments).astype(np.int64)
        self.segment_scores_, self.global_scores_ = self._rank_items(
            segment[rows], X.indices, converted, n_segments, n_items, len(active)
        )
        self.silhouette_by_k_ = np.array(
            [[k, v] for k, v in sorted(segmentation.silhouette_by_k.items())], dtype=np.float64
        ).reshape(-1, 2)
        self.features_ = np.array(segmentation.features, dtype=str)
        self.notes_ = notes + list(segmentation.report.get("notes", []))
        self.report_ = _plain({k: v for k, v in segmentation.report.items() if k != "notes"})

    def _rank_items(self, seg_of_entry, items, converted, n_segments, n_items, n_active):
        """``(segment x item scores, global item scores)``, both float32."""
        m = float(self.prior_strength)
        cell = seg_of_entry * n_items + items
        size = n_segments * n_items
        interacted = np.bincount(cell, minlength=size).reshape(n_segments, n_items).astype(float)
        if converted is None:
            hits = interacted
        else:
            hits = np.bincount(cell, weights=converted.astype(float), minlength=size)
            hits = hits.reshape(n_segments, n_items)
        segment_size = self.segment_sizes_.astype(float)[:, None]
        hits_all, interacted_all = hits.sum(axis=0), interacted.sum(axis=0)
        # Reach: share of the segment's users who interacted with the item, pulled toward the
        # item's share among all users.
        reach_prior = interacted_all / n_active
        reach = (interacted + m * reach_prior) / np.maximum(segment_size + m, 1.0)
        if converted is None:  # no goal: interaction rate
            return reach.astype(np.float32), reach_prior.astype(np.float32)
        # Rate: conversions among the segment's users who interacted, pulled toward the item's
        # global rate, itself pulled toward the overall rate (rare items borrow from it).
        overall = hits_all.sum() / max(interacted_all.sum(), 1.0)
        rate_prior = np.divide(
            hits_all + m * overall,
            interacted_all + m,
            out=np.full(n_items, overall),
            where=(interacted_all + m) > 0,
        )
        rate = np.divide(
            hits + m * rate_prior,
            interacted + m,
            out=np.broadcast_to(rate_prior, hits.shape).copy(),
            where=(interacted + m) > 0,
        )
        if self.score == "conversions":
            scores, global_scores = reach * rate, reach_prior * rate_prior
        else:
            # Equal rates (often: no evidence either way) are ordered by reach.
            scale = TIE_BREAK / max(reach.max(), 1e-12)
            scores, global_scores = rate + scale * reach, rate_prior + scale * reach_prior
        return scores.astype(np.float32), global_scores.astype(np.float32)

    # -- scoring -------------------------------------------------------------------------------
    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        segment = self.user_segment_[user_rows]
        known = segment >= 0
        out = np.empty((len(user_rows), self.n_items_), dtype=np.float32)
        out[known] = self.segment_scores_[segment[known]]
        out[~known] = self.global_scores_
        return out

    def segment_of(self, user_rows: Any) -> np.ndarray:
        """Segment number of each user row; ``-1`` for users without events at fit time."""
        self._check_fitted()
        return self.user_segment_[check_rows(user_rows, self.n_users_, "user")]
