"""Peer models for the quality benchmark, behind the recipe protocol of the evaluation harness.

Each has ``fit(X: csr users × items) -> self`` and
``recommend(user_rows, k, exclude=csr) -> (item_rows, scores)``; they score all items, mask
``exclude`` and keep the top k. Nothing here is part of the product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack


def top_k(scores: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of dense ``scores``, never an ``exclude`` non-zero."""
    scores = np.array(scores, dtype=np.float64)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(part_scores, order, axis=1)
    items[~np.isfinite(best)] = -1
    return items, best


class Popularity:
    """Most-interacted train items first."""

    def fit(self, X):
        self.counts_ = np.asarray(sp.csr_matrix(X).sum(axis=0), dtype=np.float64).ravel()
        return self

    def recommend(self, user_rows, k, exclude=None):
        scores = np.broadcast_to(self.counts_, (len(user_rows), self.counts_.shape[0]))
        return top_k(scores, k, exclude)


class ImplicitALS:
    """``implicit`` ALS with the library defaults (100 factors, reg 0.01, alpha 1, 15 iters).

    implicit >= 0.7 takes the user × item matrix in ``fit``. Scores are computed here as dot
    products so masking is the same as for the other peers.
    """

    def __init__(self, random_state=0, num_threads=2, **params):
        self.random_state = random_state
        self.num_threads = num_threads
        self.params = params

    def fit(self, X):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit parallelises itself; see its warning
            self.model_ = AlternatingLeastSquares(
                random_state=self.random_state, num_threads=self.num_threads, **self.params
            )
            self.model_.fit(sp.csr_matrix(X, dtype=np.float32), show_progress=False)
        return self

    def recommend(self, user_rows, k, exclude=None):
        scores = self.model_.user_factors[user_rows] @ self.model_.item_factors.T
        return top_k(scores, k, exclude)


class EASE:
    """EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, zero diagonal.

    Items without any train interaction get a zero column in B exactly, so the inverse is
    taken over the items seen in train only (same scores, much less work on long-tailed data).
    """

    def __init__(self, reg: float = 250.0):
        self.reg = reg

    def fit(self, X):
        X = sp.csr_matrix(X, dtype=np.float64)
        self.X_ = X
        seen = np.flatnonzero(np.diff(sp.csc_matrix(X).indptr) > 0)
        Xs = X[:, seen]
        gram = (Xs.T @ Xs).toarray()
        gram[np.diag_indices_from(gram)] += self.reg
        P = _spd_inverse(gram)
        del gram
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.seen_ = seen
        self.B_ = B
        return self

    def recommend(self, user_rows, k, exclude=None):
        sub = self.X_[user_rows][:, self.seen_]
        scores = np.zeros((len(user_rows), self.X_.shape[1]))
        scores[:, self.seen_] = np.asarray(sub @ self.B_)
        return top_k(scores, k, exclude)


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix by Cholesky (LAPACK potrf + potri)."""
    factor, info = lapack.dpotrf(matrix, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (info={info}).")
    inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Inverse from the Cholesky factor failed (info={info}).")
    upper = np.triu(inverse)
    upper += np.triu(inverse, 1).T
    return upper
