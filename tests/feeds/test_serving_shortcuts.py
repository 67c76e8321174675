"""Serving's per-request shortcuts give exactly the answers of the general code they replace
(docs/benchmarks.md "Serving, third pass"): the one-slot placement of a response against the
feed engine, and the recipe's exploration mixing against its former implementation. No
database: random inputs, compared item by item."""

from __future__ import annotations

import math
import threading
import uuid
from itertools import islice
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import rankdata

from feeds import recommending
from feeds.engine.feed import Candidate, FeedSpec, Slot, iter_feed
from feeds.engine.feed import Promotion as FeedPromotion
from models_app.recipes import als
from models_app.recipes.base import top_k

# --------------------------------------------------------------------------- placement


def engine_placement(k, model_list, fallback, promotions, explored):
    """What recommending placed before the shortcut: the feed engine on a one-slot feed."""
    spec = FeedSpec(
        slots=[Slot(recommending.MODEL)],
        fallback=recommending.POPULAR if fallback else None,
        promotions=[
            FeedPromotion(name, candidates=c, share=share, positions=positions, reason=reason)
            for name, c, share, positions, reason in promotions
        ],
    )
    candidates = {recommending.MODEL: model_list}
    if fallback:
        candidates[recommending.POPULAR] = fallback
    out = []
    for item in islice(iter_feed(spec, candidates), k):
        if item.promotion is not None:
            source = recommending.PROMOTION
        elif item.source == recommending.MODEL and item.item_id in explored:
            source = recommending.EXPLORATION
        else:
            source = item.source
        out.append((item.item_id, item.score, source, item.reason))
    return out


def random_case(rng):
    n_items = int(rng.integers(5, 60))
    k = int(rng.integers(1, 30))

    def ranked(size, scored, reason=""):
        rows = rng.choice(n_items, size=min(size, n_items), replace=False).tolist()
        return [Candidate(r, float(rng.random()) if scored else None, reason) for r in rows]

    model_list = ranked(int(rng.integers(0, 40)), True)
    fallback = ranked(int(rng.integers(0, 30)), False, "popular") if rng.random() < 0.6 else []
    promotions = []
    for n in range(int(rng.integers(0, 4))):
        candidates = ranked(int(rng.integers(0, 12)), rng.random() < 0.5)
        if rng.random() < 0.5:
            rule = (float(rng.choice([0.1, 0.2, 0.25, 1 / 3, 0.5, 1.0])), None)
        else:
            rule = (None, sorted({int(p) for p in rng.integers(1, 25, size=3)}))
        reason = "promoted" if rng.random() < 0.5 else f"promoted: p{n}"
        promotions.append((f"p{n}", candidates, *rule, reason))
    explored = {c.item_id for c in model_list if rng.random() < 0.2}
    return k, model_list, fallback, promotions, explored


def test_the_one_slot_placement_equals_the_feed_engine():
    rng = np.random.default_rng(7)
    promoted_somewhere = explored_somewhere = short = 0
    for _ in range(1500):
        k, model_list, fallback, promotions, explored = random_case(rng)
        expected = engine_placement(k, model_list, fallback, promotions, explored)
        promos = [
            recommending._promotion_rule(name, c, share, positions, reason, k)
            for name, c, share, positions, reason in promotions
        ]
        got = recommending._assemble(None, k, model_list, fallback, promos, explored)
        assert got == expected
        sources = [p[2] for p in got]
        promoted_somewhere += recommending.PROMOTION in sources
        explored_somewhere += recommending.EXPLORATION in sources
        short += len(got) < k
    # The random cases exercised promotions, exploration slots and lists that run dry.
    assert promoted_somewhere > 300 and explored_somewhere > 100 and short > 100


def test_a_promotion_with_a_bad_rule_is_skipped_like_the_engine_refuses_it():
    assert recommending._promotion_rule("", [], 0.2, None, "", 10) is None
    assert recommending._promotion_rule("p", [], 1.5, None, "", 10) is None
    assert recommending._promotion_rule("p", [], None, [0], "", 10) is None
    rule = recommending._promotion_rule("p", [], 0.2, None, "", 20)
    assert sorted(rule.claimed) == [5, 10, 15, 20] and rule.reason == "promoted: p"


# --------------------------------------------------------------------------- exploration


def former_mix_exploration(recipe, scores, k, rng):
    """ALSRecipe._mix_exploration as it was before the one-list shortcut (the reference)."""
    items, values = top_k(scores, k)
    explored = np.zeros(items.shape, dtype=bool)
    weight = float(recipe.exploration_weight)
    priority = recipe.exploration_priority_
    if weight <= 0 or not np.any(priority > 0):
        return items, values, explored
    for r in range(len(items)):
        n_explore = min(k, math.floor(weight * k + rng.random()))
        if n_explore == 0:
            continue
        cold = np.flatnonzero((priority > 0) & np.isfinite(scores[r]))
        while n_explore > 0:
            candidates = cold[~np.isin(cold, items[r, : k - n_explore])]
            if len(candidates) >= n_explore:
                break
            n_explore -= 1
        if n_explore == 0:
            continue
        relevance = rankdata(scores[r, candidates]) / len(candidates)
        keys = np.log(relevance * priority[candidates]) + rng.gumbel(size=len(candidates))
        chosen = candidates[np.argsort(-keys)[:n_explore]]
        slots = np.zeros(k, dtype=bool)
        slots[rng.choice(k, size=n_explore, replace=False)] = True
        row = np.empty(k, dtype=np.int64)
        row[slots] = chosen
        row[~slots] = items[r, : k - n_explore]
        real = row >= 0
        items[r] = np.r_[row[real], np.full(k - real.sum(), -1)]
        flags = slots[real]
        explored[r] = np.r_[flags, np.zeros(k - real.sum(), dtype=bool)]
        values[r] = np.where(items[r] >= 0, scores[r, np.maximum(items[r], 0)], -np.inf)
    return items, values, explored


@pytest.mark.parametrize("n_rows", [1, 3])
def test_exploration_mixing_draws_exactly_as_before(n_rows):
    gen = np.random.default_rng(11)
    explored_slots = 0
    for _ in range(400):
        n_items = int(gen.integers(1, 300))
        k = int(gen.integers(1, 50))
        scores = gen.normal(size=(n_rows, n_items)).astype(np.float32)
        if gen.random() < 0.3:
            scores = np.round(scores, 1)  # ties
        scores[gen.random((n_rows, n_items)) < gen.random()] = -np.inf  # filtered out
        priority = np.where(gen.random(n_items) < gen.random(), gen.random(n_items), 0)
        recipe = SimpleNamespace(
            exploration_weight=float(gen.choice([0.0, 0.1, 0.3, 1.0])),
            exploration_priority_=priority.astype(np.float32),
        )
        seed = int(gen.integers(1 << 30))
        expected = former_mix_exploration(recipe, scores.copy(), k, np.random.default_rng(seed))
        got = als.ALSRecipe._mix_exploration(recipe, scores.copy(), k, np.random.default_rng(seed))
        for old, new in zip(expected, got, strict=True):
            assert old.dtype == new.dtype and np.array_equal(old, new)
        explored_slots += int(got[2].sum())
    assert explored_slots > 100


def test_ranks_match_scipy_including_ties():
    gen = np.random.default_rng(3)
    for size in (1, 2, 5, 40, 63, 64, 65, 300):  # both sides of SMALL_RANKS
        for decimals in (1, 3):
            values = np.round(gen.normal(size=size), decimals).astype(np.float32)
            ranks = als._average_ranks(values)
            assert ranks.dtype == np.float64 and np.array_equal(ranks, rankdata(values))
    assert np.array_equal(als._average_ranks(np.array([0.0, -0.0, 1.0])), [1.5, 1.5, 3.0])


def test_the_exploration_generator_replays_a_recommendation_id():
    """The draws of a response follow from its logged id alone, whatever was drawn before on
    the thread, and other ids draw differently."""
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    draws = recommending.exploration_generator(first).random(5)
    recommending.exploration_generator(second).random(3)  # another response in between
    assert np.array_equal(recommending.exploration_generator(first).random(5), draws)
    assert not np.array_equal(recommending.exploration_generator(second).random(5), draws)


def test_threads_draw_from_their_own_exploration_generators():
    rec_id = uuid.uuid4().hex
    expected = recommending.exploration_generator(rec_id).random(1000)
    results = []

    def draw():
        generator = recommending.exploration_generator(rec_id)
        results.append(np.concatenate([generator.random(1) for _ in range(1000)]))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(result, expected) for result in results)


def test_exploring_the_allowed_items_only_draws_as_over_the_whole_catalogue():
    """``_explore_among`` mixes over the allowed columns only; the answer is the recipe's
    mixing over every column with the others at -inf, draw for draw. (Equal scores at the
    cut of the relevance list are taken in an order that depends on the array, as ever: the
    scores here have none.)"""
    gen = np.random.default_rng(5)
    explored_slots = 0
    for _ in range(300):
        n_items = int(gen.integers(1, 300))
        want = int(gen.integers(1, 50))
        scores = gen.permutation(n_items).astype(np.float32) - n_items / 2
        allowed = gen.random(n_items) < gen.random()
        recipe = als.ALSRecipe()
        recipe.exploration_weight = float(gen.choice([0.1, 0.3, 1.0]))
        recipe.exploration_priority_ = np.where(
            gen.random(n_items) < gen.random(), gen.random(n_items), 0
        ).astype(np.float32)
        rec_id = uuid.uuid4().hex
        masked = np.where(allowed, scores, -np.inf).astype(np.float32)
        items, values, flags = recipe._mix_exploration(
            masked[None, :], want, recommending.exploration_generator(rec_id)
        )
        keep = items[0] >= 0
        cols = np.flatnonzero(allowed)
        got = recommending._explore_among(recipe, cols, scores[cols], want, rec_id)
        for expected, new in zip((items[0], values[0], flags[0]), got, strict=True):
            assert np.array_equal(expected[keep], new)
        explored_slots += int(got[2].sum())
    assert explored_slots > 100


def test_equal_scores_are_listed_lower_index_first():
    scores = np.array([1.0, 3.0, 3.0, -np.inf, 2.0, 3.0, 1.0], dtype=np.float32)
    assert recommending._top(scores, 5).tolist() == [1, 2, 5, 4, 0]
    assert recommending._top(scores, 10).tolist() == [1, 2, 5, 4, 0, 6]


def test_one_row_top_k_equals_the_batch_top_k():
    """The one-row top-k of a response (with its shortcut for all-finite lists) gives the
    batch ``top_k``'s answer, -inf (filtered), NaN, ties and short rows included."""
    gen = np.random.default_rng(21)
    for _ in range(500):
        n_items = int(gen.integers(1, 200))
        k = int(gen.integers(1, 60))
        scores = gen.normal(size=n_items).astype(np.float32)
        if gen.random() < 0.3:
            scores = np.round(scores, 1)
        scores[gen.random(n_items) < gen.random() * gen.random()] = -np.inf
        if gen.random() < 0.1:
            scores[gen.integers(n_items)] = np.nan
        items, values = als._top_k_row(scores, k)
        expected_items, expected_values = top_k(scores[None, :], k)
        assert items.dtype == np.int64 and values.dtype == np.float32
        assert np.array_equal(items, expected_items[0])
        assert np.array_equal(values, expected_values[0], equal_nan=True)
