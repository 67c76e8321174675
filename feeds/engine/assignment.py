"""Stable assignment of users to experiment variants (Django-free).

A user's variant depends only on the experiment's salt, the variants' names and weights, and
the user's id: the same user gets the same variant on every call, in every process and on
every machine, with nothing stored.

How: weighted rendezvous hashing ("highest random weight"). For each variant, SHA-256 of
``salt / variant name / user id`` gives a number ``u`` uniform in (0, 1); the variant's
score is ``-ln(u) / weight`` (an exponential draw with rate ``weight``) and the user goes
to the variant with the smallest score. Variant ``i`` wins with probability
``weight_i / sum(weights)``, so the traffic split follows the weights.

What happens when the configuration changes (docs/experiments.md):

* **Nothing changes** (pause, resume, restart of the server): nobody moves.
* **A variant is added**: only users who move *to the new variant* change; nobody moves
  between the old variants. The new variant takes ``w_new / (sum + w_new)`` of everybody.
* **A variant is removed**: only its users move, spread over the others by weight.
* **One weight changes**: users move only into the variant whose weight grew (or out of the
  variant whose weight shrank); the other variants keep each other's users.
* **The salt changes**: everybody is reshuffled, independently of the old assignment (this is
  how two experiments split the same users independently).
* **A variant is renamed**: its name is part of the hash, so this reshuffles like removing it
  and adding a new one. The experiments service refuses renames once an experiment started.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

# 2**64: the first 8 bytes of the digest as an unsigned integer, mapped into (0, 1).
_SCALE = float(2**64)


class AssignmentError(ValueError):
    """Variants that cannot split traffic (no variant, a weight below 1, duplicate names)."""


def unit_hash(salt: str, key: str, user_id: str) -> float:
    """A number in the open interval (0, 1), uniform over user ids, fixed for its inputs."""
    digest = hashlib.sha256(f"{salt}/{key}/{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE


def _check(names: Sequence[str], weights: Sequence[float]) -> None:
    if len(names) == 0:
        raise AssignmentError("An experiment needs at least one variant to assign users to.")
    if len(names) != len(weights):
        raise AssignmentError(f"{len(names)} variant names but {len(weights)} weights.")
    if len(set(names)) != len(names):
        raise AssignmentError("Variant names must be distinct: the name is part of the hash.")
    bad = [n for n, w in zip(names, weights, strict=True) if not w >= 1]
    if bad:
        raise AssignmentError(
            f"Variant {', '.join(bad)} has a weight below 1; weights are whole numbers from 1 "
            "(relative shares: 1 and 1 split 50/50, 3 and 1 split 75/25)."
        )


def assign(user_id: str, names: Sequence[str], weights: Sequence[float], salt: str) -> int:
    """The index in ``names`` of the variant ``user_id`` is assigned to."""
    _check(names, weights)
    best, best_score = 0, math.inf
    for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
        score = -math.log(unit_hash(salt, name, user_id)) / float(weight)
        if score < best_score:
            best, best_score = index, score
    return best


def assign_many(
    user_ids: Sequence[str], names: Sequence[str], weights: Sequence[float], salt: str
) -> np.ndarray:
    """``assign`` for many users: an int64 array of variant indices, one per user id."""
    _check(names, weights)
    n = len(user_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    scores = np.empty((len(names), n), dtype=np.float64)
    for index, name in enumerate(names):
        prefix = f"{salt}/{name}/"
        raw = np.fromiter(
            (
                int.from_bytes(hashlib.sha256(f"{prefix}{u}".encode()).digest()[:8], "big")
                for u in user_ids
            ),
            dtype=np.float64,
            count=n,
        )
        scores[index] = -np.log((raw + 0.5) / _SCALE) / float(weights[index])
    return np.argmin(scores, axis=0).astype(np.int64)


def expected_shares(weights: Sequence[float]) -> np.ndarray:
    """The share of users each variant receives: weights divided by their sum."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    return w / total if total > 0 else np.zeros_like(w)
