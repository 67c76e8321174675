"""content-based: items described by TF-IDF of their text plus one-hot categories; similar items
by cosine, and users scored by the profile of the items they interacted with. Works for items
nobody has interacted with yet (cold start) and for users with a handful of events."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models_app.recipes.base import Recipe


class ContentBased(Recipe):
    name = "content-based"
    description = "TF-IDF text and categorical item features; cold-start friendly."
    param_docs = {
        "text_fields": "Item fields holding free text (matched case-insensitively), e.g. "
        "title and description; concatenated and TF-IDF weighted.",
        "category_fields": "Item fields holding categories, one-hot encoded; values with '|' "
        "are multi-valued ('Shoes|Running').",
        "category_weight": "Weight of the category block relative to the text block.",
        "max_features": "Vocabulary size cap for TF-IDF.",
    }
    _learned = ("item_vectors_", "user_items_")

    def __init__(
        self,
        *,
        text_fields: list[str] | None = None,
        category_fields: list[str] | None = None,
        category_weight: float = 1.0,
        max_features: int = 20_000,
    ):
        self.text_fields = text_fields
        self.category_fields = category_fields
        self.category_weight = category_weight
        self.max_features = max_features

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        """``item_features``: a DataFrame or a list of dicts, one row per item row of ``X``."""
        features = kwargs.get("item_features")
        if features is None:
            raise ValueError(
                "content-based needs item_features: fit(X, item_features=...) with a DataFrame "
                "or list of dicts, one per item row, e.g. TITLE, DESCRIPTION, CATEGORY."
            )
        frame = pd.DataFrame(features) if not isinstance(features, pd.DataFrame) else features
        if len(frame) != X.shape[1]:
            raise ValueError(
                f"item_features has {len(frame)} rows but the matrix has {X.shape[1]} items; "
                "give one row per item, in item-row order."
            )
        columns = {str(c).lower(): c for c in frame.columns}
        text = [columns[f.lower()] for f in self._text_fields() if f.lower() in columns]
        cats = [columns[f.lower()] for f in self._category_fields() if f.lower() in columns]
        if not text and not cats:
            raise ValueError(
                f"none of the fields {self._text_fields() + self._category_fields()} are in "
                f"item_features (columns: {list(frame.columns)}); set text_fields/category_fields."
            )
        blocks = []
        if text:
            docs = frame[text].fillna("").astype(str).agg(" ".join, axis=1)
            vectorizer = TfidfVectorizer(
                max_features=int(self.max_features), sublinear_tf=True, stop_words="english"
            )
            with contextlib.suppress(ValueError):  # ValueError: every document empty
                blocks.append(normalize(vectorizer.fit_transform(docs)))
        if cats:
            for column in cats:
                values = frame[column].fillna("").astype(str).str.split("|")
                dummies = values.explode().str.strip().pipe(pd.get_dummies).groupby(level=0).max()
                dummies = dummies.drop(columns=[""], errors="ignore").reindex(frame.index)
                block = sp.csr_matrix(dummies.fillna(0).to_numpy(dtype=np.float32))
                blocks.append(normalize(block) * float(self.category_weight) / np.sqrt(len(cats)))
        if not blocks:
            raise ValueError("item_features gave no usable text or category values.")
        self.item_vectors_ = sp.csr_matrix(normalize(sp.hstack(blocks).tocsr()), dtype=np.float32)
        self.user_items_ = X

    def _text_fields(self) -> list[str]:
        return list(self.text_fields) if self.text_fields is not None else ["title", "description"]

    def _category_fields(self) -> list[str]:
        return list(self.category_fields) if self.category_fields is not None else ["category"]

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        profile = normalize(self.user_items_[user_rows] @ self.item_vectors_)
        return (profile @ self.item_vectors_.T).toarray()

    def _score_similar(self, item_rows: np.ndarray) -> np.ndarray:
        return (self.item_vectors_[item_rows] @ self.item_vectors_.T).toarray()
