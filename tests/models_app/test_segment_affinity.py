"""segment-affinity recipe: the recipe protocol, segments and rankings on the demo shop, the
Bayesian smoothing on a hand-checked example, and the goal-event fallback. No database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.ingest.demo import build_demo_shop
from graphs.analysis import compare_partitions
from models_app.recipes import RECIPES, Recipe, aggregate_events
from models_app.recipes.segment_affinity import SegmentAffinity


@pytest.fixture(scope="module")
def shop():
    s = build_demo_shop(n_users=600, n_items=300, n_interactions=40_000, seed=1)
    item_ids = s.items.ITEM_ID.to_numpy()
    item_row = {item: n for n, item in enumerate(item_ids)}
    user_ids = s.users.USER_ID.to_numpy()
    user_row = {user: n for n, user in enumerate(user_ids)}
    events = s.interactions
    X, fit_kwargs = aggregate_events(
        events.USER_ID.map(user_row).to_numpy(),
        events.ITEM_ID.map(item_row).to_numpy(),
        (len(user_ids), len(item_ids)),
        timestamps=events.TIMESTAMP.to_numpy(),
        event_types=events.EVENT_TYPE.to_numpy(),
    )
    fit_kwargs["item_features"] = s.items
    fit_kwargs["now"] = float(events.TIMESTAMP.max())
    return {
        "X": X,
        "kwargs": fit_kwargs,
        "truth": s.ground_truth,
        "users": s.users,
        "user_row": user_row,
        "categories": s.items.CATEGORY.str.split("|").to_numpy(),
    }


@pytest.fixture(scope="module")
def model(shop):
    return SegmentAffinity().fit(shop["X"], **shop["kwargs"])


def category_counts(shop, items: np.ndarray) -> pd.Series:
    """How often each category appears among recommended items (multi-valued count for each)."""
    return pd.Series(
        [c for item in items.ravel() if item >= 0 for c in shop["categories"][item]]
    ).value_counts()


# --- quality on the demo shop ------------------------------------------------------------------
def test_segments_are_the_planted_ones(model, shop):
    assert model.segment_sizes_.size == 6 and model.segment_sizes_.sum() == 600
    labels = pd.Series(model.user_segment_, index=list(shop["user_row"]))
    agreement = compare_partitions(labels, shop["truth"]["user_segment"])
    assert agreement["ari"] >= 0.8, agreement
    assert model.goal_found_ and model.notes_ == []
    ks = model.silhouette_by_k_[:, 0].astype(int).tolist()
    assert ks == list(range(2, 11)) and model.report_["k"] == 6
    assert "category:Running" in model.features_.tolist()


def test_each_segment_gets_its_favourite_categories_first(model, shop):
    # The ranking each planted segment's members get: the category that fills most of their top
    # 10 is one of the segment's two favourites, per user and overall, and the favourites fill
    # most of it. With 12 categories, chance would give about 1 in 5 (multi-valued items).
    X = shop["X"]
    for segment in shop["truth"]["segments"]:
        rows = np.array([shop["user_row"][u] for u in segment["users"]])
        liked = np.array([any(c in segment["categories"] for c in cs) for cs in shop["categories"]])
        items, scores = model.recommend(rows, 10)
        assert np.all(np.diff(scores, axis=1) <= 0)
        counts = category_counts(shop, items)
        assert counts.index[0] in segment["categories"], (segment["name"], counts.head(3))
        assert liked[items].mean() >= 0.6, (segment["name"], liked[items].mean())
        firsts = [category_counts(shop, row).index[0] in segment["categories"] for row in items]
        assert np.mean(firsts) >= 0.9, (segment["name"], np.mean(firsts))
        # Serving excludes what users already know: what is left still leans to the segment.
        items, _ = model.recommend(rows, 10, exclude=X[rows])
        assert liked[items].mean() >= 2 * liked.mean(), (segment["name"], liked[items].mean())


def test_a_missing_goal_event_falls_back_to_interaction_rate(shop):
    X, kw = shop["X"], shop["kwargs"]
    model = SegmentAffinity(goal_event="signup").fit(X, **kw)
    assert not model.goal_found_
    assert "'signup' does not occur" in model.notes_[0] and "interaction rate" in model.notes_[0]
    assert "No goal" in model.report_["selection"]["note"]
    techies = next(s for s in shop["truth"]["segments"] if s["name"] == "techies")
    rows = np.array([shop["user_row"][u] for u in techies["users"]])
    items, _ = model.recommend(rows, 10, exclude=X[rows])
    assert category_counts(shop, items).index[0] in techies["categories"]
    without_types = {k: v for k, v in kw.items() if k != "event_types"}
    model = SegmentAffinity().fit(X, **without_types)
    assert not model.goal_found_ and "no event_types" in model.notes_[0]
    assert np.isfinite(model.recommend(np.array([0]), 5)[1]).all()


def test_without_item_features_users_are_described_by_activity(shop):
    X, kw = shop["X"], shop["kwargs"]
    model = SegmentAffinity(k_max=4).fit(X, event_types=kw["event_types"])
    assert any("no item_features" in note for note in model.notes_)
    assert not any(f.startswith("category:") for f in model.features_)


# --- the scores, by hand -------------------------------------------------------------------------
def tiny():
    """4 users, 3 items. Cells' latest events: user 0 bought item 0 and viewed 1; user 1
    viewed 0 and bought 2; user 2 viewed 0; user 3 has no events."""
    X = sp.csr_matrix(np.array([[1, 2, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=np.float32))
    types = np.array(["purchase", "view", "view", "purchase", "view"], dtype=object)
    return X, types


def test_conversion_scores_are_smoothed_toward_the_items_global_rate():
    X, types = tiny()
    model = SegmentAffinity(n_segments=1, prior_strength=2.0).fit(X, event_types=types)
    assert model.user_segment_.tolist() == [0, 0, 0, -1]
    # N = N_s = 3 users with events, m = 2; n: users who interacted, c: who bought.
    n, c, m = np.array([3.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0]), 2.0
    reach = (n + m * n / 3) / (3 + m)
    rate_prior = (c + m * c.sum() / n.sum()) / (n + m)
    rate = (c + m * rate_prior) / (n + m)
    np.testing.assert_allclose(model.segment_scores_[0], reach * rate, rtol=1e-5)
    np.testing.assert_allclose(model.global_scores_, n / 3 * rate_prior, rtol=1e-5)
    by_rate = SegmentAffinity(n_segments=1, prior_strength=2.0, score="rate")
    by_rate.fit(X, event_types=types)
    np.testing.assert_allclose(by_rate.segment_scores_[0], rate, atol=2e-4)
    # Item 2 (1 of 1 bought) has the best rate; item 0 (seen by all, 1 of 3 bought) the most
    # expected conversions.
    assert by_rate.recommend(np.array([1]), 3)[0][0].tolist() == [2, 0, 1]
    assert model.recommend(np.array([1]), 3)[0][0].tolist() == [0, 2, 1]
    # The user without events gets the population's ranking.
    np.testing.assert_allclose(model._score_users(np.array([3]))[0], model.global_scores_)
    assert model.segment_of([0, 3]).tolist() == [0, -1]


def test_no_prior_gives_the_raw_rates_and_a_strong_prior_the_global_ones(shop):
    X, kw = shop["X"], shop["kwargs"]
    raw = SegmentAffinity(prior_strength=0).fit(X, **kw)
    strong = SegmentAffinity(prior_strength=1e6).fit(X, **kw)

    def spread(model):  # how far the segments' scores stray from the population's
        return np.std(model.segment_scores_ - model.global_scores_, axis=0).mean()

    assert spread(strong) < 0.01 * spread(raw)


# --- protocol ------------------------------------------------------------------------------------
def test_recommend_excludes_pads_and_round_trips_through_save(model, shop, tmp_path):
    X = shop["X"]
    users = np.array([0, 5, 17, 599])
    items, scores = model.recommend(users, 10, exclude=X[users])
    assert items.shape == scores.shape == (4, 10)
    for n, u in enumerate(users):
        assert not np.isin(items[n], X[u].indices).any()
    items, scores = model.recommend(np.array([3]), 307, exclude=X[[3]])
    n_valid = 300 - X[3].nnz
    assert (items[0] >= 0).sum() == n_valid and np.isneginf(scores[0, n_valid:]).all()
    ranked, rank_scores = model.rank(5, [10, 3, 250, 3])
    assert sorted(ranked.tolist()) == [3, 10, 250] and np.all(np.diff(rank_scores) <= 0)

    path = model.save(tmp_path / "segments")
    loaded = SegmentAffinity.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.notes_ == model.notes_ and loaded.report_ == model.report_
    assert loaded.features_.tolist() == model.features_.tolist()
    users = np.arange(0, 600, 37)
    a, b = model.recommend(users, 10, X[users]), loaded.recommend(users, 10, X[users])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    with np.load(path, allow_pickle=False) as data:
        assert "__recipe_meta__" in data.files
    # Recipe.load finds the class through the registry, which is not this module's to edit.
    if SegmentAffinity.name in RECIPES:
        assert type(Recipe.load(path)) is SegmentAffinity


def test_parameters_are_documented_and_round_trip():
    model = SegmentAffinity()
    assert set(model.get_params()) == set(SegmentAffinity.param_docs)
    assert all(SegmentAffinity.param_docs.values())
    assert SegmentAffinity(**model.get_params()).get_params() == model.get_params()
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        model.set_params(bogus=1)


def test_bad_input_says_what_is_wrong(shop):
    X, kw = shop["X"], shop["kwargs"]
    with pytest.raises(ValueError, match=r"k=1000 is larger than the number of users \(600\)"):
        SegmentAffinity(n_segments=1000).fit(X, **kw)
    with pytest.raises(ValueError, match="score must be one of conversions, rate"):
        SegmentAffinity(score="ctr").fit(X, **kw)
    with pytest.raises(ValueError, match="2 <= k_min <= k_max"):
        SegmentAffinity(k_min=5, k_max=3).fit(X, **kw)
    with pytest.raises(ValueError, match="one value per stored entry"):
        SegmentAffinity().fit(X, event_types=np.array(["view"]))
    with pytest.raises(ValueError, match="item_features has 2 rows but the matrix has 300"):
        SegmentAffinity().fit(X, item_features=kw["item_features"][:2])
    with pytest.raises(ValueError, match=r"user_fields \['SHOE_SIZE'\] are not in"):
        SegmentAffinity(user_fields=["SHOE_SIZE"]).fit(X, user_features=shop["users"], **kw)
    with pytest.raises(ValueError, match="not fitted"):
        SegmentAffinity().recommend(np.array([0]), 5)
    with pytest.raises(ValueError, match="no non-zero entries"):
        SegmentAffinity().fit(sp.csr_matrix((4, 6)))


def test_user_fields_join_the_features_and_face_the_same_filter(shop):
    X, kw = shop["X"], shop["kwargs"]
    users = shop["users"].assign(LOYALTY=np.arange(600) % 7)
    model = SegmentAffinity(user_fields=["MEMBERSHIP", "loyalty"]).fit(X, user_features=users, **kw)
    judged = model.report_["selection"]["correlation"]
    assert "user:LOYALTY" in judged and "user:MEMBERSHIP_premium" in judged
    labels = pd.Series(model.user_segment_, index=list(shop["user_row"]))
    assert compare_partitions(labels, shop["truth"]["user_segment"])["ari"] >= 0.8
