"""item-knn: cosine item-item similarity on the interaction matrix, with shrinkage, keeping the
top ``n_neighbors`` neighbours of each item in a sparse matrix ("customers who viewed X also
viewed Y")."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.recipes.base import Recipe, top_n_sparse

_BLOCK = 2048  # items per block while computing similarities: bounds memory at block x n_items


class ItemKNN(Recipe):
    name = "item-knn"
    description = "Item-item cosine similarity with shrinkage; also serves similar items."
    param_docs = {
        "n_neighbors": "Neighbours kept per item (the similarity matrix stays sparse).",
        "shrinkage": "Added to the cosine denominator: similarities resting on few common "
        "users shrink towards 0.",
        "binarize": "Treat every interaction as 1; False uses the weights.",
    }
    _learned = ("similarity_", "user_items_")

    def __init__(self, *, n_neighbors: int = 100, shrinkage: float = 10.0, binarize: bool = True):
        self.n_neighbors = n_neighbors
        self.shrinkage = shrinkage
        self.binarize = binarize

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        if int(self.n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}.")
        if float(self.shrinkage) < 0:
            raise ValueError(f"shrinkage must be >= 0, got {self.shrinkage}.")
        if self.binarize:
            X = X.copy()
            X.data[:] = 1.0
        n_items = X.shape[1]
        Xt = sp.csr_matrix(X.T)
        norms = np.sqrt(np.asarray(Xt.multiply(Xt).sum(axis=1)).ravel())
        kk = min(int(self.n_neighbors), n_items - 1)

        def blocks():
            for start in range(0, n_items, _BLOCK):
                stop = min(start + _BLOCK, n_items)
                block = (Xt[start:stop] @ X).toarray()
                denom = np.outer(norms[start:stop], norms) + float(self.shrinkage)
                sim = np.divide(block, denom, out=np.zeros_like(block), where=denom > 0)
                sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
                yield start, sim

        self.similarity_ = top_n_sparse(blocks(), (n_items, n_items), kk)
        self.user_items_ = X

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        # score(u, j) = sum over the user's items i of w_ui * sim(i, j)
        return (self.user_items_[user_rows] @ self.similarity_).toarray()

    def _score_similar(self, item_rows: np.ndarray) -> np.ndarray:
        s = self.similarity_[item_rows].toarray()
        s[s == 0] = -np.inf  # only true neighbours; the rest pads with -1
        return s
