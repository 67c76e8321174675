"""Exploration in user-personalization: cold items get a share of the slots, relevance does not
change, over-shown items are explored less. No database.

The fixture is the demo shop with twelve "new arrivals" planted: items whose interactions are
all removed and whose CREATION_TIMESTAMP is two days before "now". Six of them were shown 300
times each in impression lists without a single interaction, the other six were never shown.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from datasets.ingest.demo import build_demo_shop
from models_app.recipes import Recipe, aggregate_events, get_recipe
from models_app.recipes.als import exploration_priority

DAY = 86_400
K = 10


@pytest.fixture(scope="module")
def shop():
    s = build_demo_shop(n_users=600, n_items=300, n_interactions=40_000, seed=2)
    item_ids = s.items.ITEM_ID.to_numpy()
    item_row = {item: n for n, item in enumerate(item_ids)}
    user_row = {user: n for n, user in enumerate(s.users.USER_ID)}
    events = s.interactions
    users = events.USER_ID.map(user_row).to_numpy()
    items = events.ITEM_ID.map(item_row).to_numpy()
    now = float(events.TIMESTAMP.max())
    # New arrivals: old, mid-popular items re-dated to two days ago, their events dropped.
    counts = np.bincount(items, minlength=len(item_ids))
    old = s.items.CREATION_TIMESTAMP.to_numpy() < now - 365 * DAY
    candidates = np.flatnonzero(old & (counts > 0))
    new = np.random.default_rng(0).choice(candidates, 12, replace=False)
    unseen, over_shown = new[:6], new[6:]
    keep = ~np.isin(items, new)
    X, kwargs = aggregate_events(
        users[keep],
        items[keep],
        (len(user_row), len(item_ids)),
        timestamps=events.TIMESTAMP.to_numpy()[keep],
        event_types=events.EVENT_TYPE.to_numpy()[keep],
    )
    features = s.items.copy()
    features.loc[new, "CREATION_TIMESTAMP"] = now - 2 * DAY
    shown = events.IMPRESSION.fillna("").str.split("|").explode()
    impressions = np.bincount(shown[shown != ""].map(item_row), minlength=len(item_ids))
    impressions = impressions.astype(float)
    impressions[unseen] = 0
    impressions[over_shown] = 300
    kwargs.update(item_features=features, impressions=impressions, now=now)
    return {"X": X, "kwargs": kwargs, "unseen": unseen, "over_shown": over_shown, "new": new}


def fit(shop, **params):
    return get_recipe("user-personalization")(**params).fit(shop["X"], **shop["kwargs"])


@pytest.fixture(scope="module")
def explorer(shop):
    return fit(shop, exploration_weight=0.2)


def check_lists(items, explored, exclude):
    for n, row in enumerate(items):
        real = row[row >= 0]
        assert len(set(real.tolist())) == len(real), "a list holds an item twice"
        assert not np.isin(real, exclude[n].indices).any(), "an excluded item was recommended"
        assert not explored[n][row < 0].any(), "padding is never an exploration slot"


# --- serving ----------------------------------------------------------------------------------
def test_weight_zero_changes_nothing(shop):
    model, X = fit(shop, exploration_weight=0.0), shop["X"]
    users = np.arange(600)
    plain = model.recommend(users, K, exclude=X[users])
    items, scores, explored = model.recommend_with_exploration(users, K, X[users], seed=1)
    np.testing.assert_array_equal(items, plain[0])
    np.testing.assert_array_equal(scores, plain[1])
    assert not explored.any()
    history = X[5].indices
    single = model.recommend_for_items(history, k=K, explore=True, seed=1)
    np.testing.assert_array_equal(single[0], model.recommend_for_items(history, k=K)[0])
    assert not single[2].any()


def test_recommend_stays_pure_relevance_whatever_the_exploration_weight(shop, explorer):
    # Offline evaluation calls recommend: exploration must not touch it.
    users, X = np.arange(0, 600, 7), shop["X"]
    relevance = fit(shop, exploration_weight=0.0).recommend(users, K, exclude=X[users])
    explored = explorer.recommend(users, K, exclude=X[users])
    np.testing.assert_array_equal(relevance[0], explored[0])


def test_new_items_fill_the_exploration_share_of_the_slots(shop, explorer):
    users, X = np.arange(600), shop["X"]
    items, scores, explored = explorer.recommend_with_exploration(users, K, X[users], seed=3)
    check_lists(items, explored, X[users])
    # 0.2 x 10 slots = 2 per list on average (randomised rounding keeps the mean exact).
    assert abs(explored.sum(axis=1).mean() - 2.0) < 0.1
    # Exploration slots hold cold items only; the others keep the relevance order.
    assert np.all(explorer.exploration_priority_[items[explored]] > 0)
    plain = explorer.recommend(users, K, exclude=X[users])[0]
    for n in range(0, 600, 25):
        relevance = items[n][~explored[n] & (items[n] >= 0)]
        np.testing.assert_array_equal(relevance, plain[n][: len(relevance)])
        np.testing.assert_allclose(
            scores[n], explorer._score_users(users[[n]])[0, items[n]], rtol=1e-5
        )
    # The never-shown new arrivals (no interactions at all) are the newest and least-seen
    # items: they take far more than their 6-in-24 share of the candidates (~0.6 here).
    assert (explorer.exploration_priority_ > 0).sum() == 24
    share_unseen = np.isin(items[explored], shop["unseen"]).mean()
    assert share_unseen >= 0.45, share_unseen
    # ... and every one of them gets shown to someone.
    assert set(shop["unseen"].tolist()) <= set(items[explored].tolist())
    # Relevance alone never shows them.
    assert not np.isin(plain, shop["new"]).any()


def test_items_shown_often_without_interactions_are_explored_less(shop, explorer):
    priority = explorer.exploration_priority_
    assert priority[shop["over_shown"]].max() < 0.3 * priority[shop["unseen"]].min()
    users, X = np.arange(600), shop["X"]
    items, _, explored = explorer.recommend_with_exploration(users, K, X[users], seed=4)
    unseen = np.isin(items[explored], shop["unseen"]).sum()
    over_shown = np.isin(items[explored], shop["over_shown"]).sum()
    assert over_shown < 0.3 * unseen, (over_shown, unseen)


def test_excluded_items_never_appear(shop, explorer):
    users, X = np.arange(600), shop["X"]
    block = sp.lil_matrix(X.shape)
    block[:, shop["unseen"]] = 1  # e.g. a filter removes the unseen new arrivals
    exclude = sp.csr_matrix(X + block)[users]
    items, _, explored = explorer.recommend_with_exploration(users, K, exclude, seed=5)
    check_lists(items, explored, exclude)
    assert not np.isin(items, shop["unseen"]).any()
    assert explored.any(), "other cold items still take the exploration slots"
    single, _, flags = explorer.recommend_for_items(
        X[0].indices, k=K, exclude=np.r_[X[0].indices, shop["unseen"]], explore=True, seed=5
    )
    assert not np.isin(single, np.r_[X[0].indices, shop["unseen"]]).any()
    assert flags.shape == (K,)


def test_cold_items_already_in_the_list_are_not_drawn_again(shop, explorer):
    # Only four cold items, three of them the user's top relevance picks and one at rank 7:
    # half the slots cannot be filled, and rank 7 must not come back as an exploration pick.
    model, X = copy.deepcopy(explorer), shop["X"]
    model.exploration_weight = 0.5
    top = model.recommend(np.array([3]), K, exclude=X[[3]])[0][0]
    model.exploration_priority_ = np.zeros_like(model.exploration_priority_)
    model.exploration_priority_[np.r_[top[:3], top[6]]] = 1.0
    for seed in range(20):
        items, _, explored = model.recommend_with_exploration([3], K, X[[3]], seed=seed)
        assert len(set(items[0].tolist())) == K
        np.testing.assert_array_equal(items[0], top)
        assert not explored.any()


def test_full_weight_explores_every_slot_and_seeds_reproduce(shop):
    model, X = fit(shop, exploration_weight=1.0), shop["X"]
    users = np.arange(40)
    a = model.recommend_with_exploration(users, 5, X[users], seed=7)
    b = model.recommend_with_exploration(users, 5, X[users], seed=7)
    c = model.recommend_with_exploration(users, 5, X[users], seed=8)
    assert a[2].all()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]), "another seed draws other items"


def test_save_load_keeps_exploration(shop, explorer, tmp_path):
    users, X = np.arange(0, 600, 11), shop["X"]
    loaded = Recipe.load(explorer.save(tmp_path / "explorer"))
    assert loaded.exploration_weight == 0.2
    np.testing.assert_array_equal(loaded.exploration_priority_, explorer.exploration_priority_)
    a = explorer.recommend_with_exploration(users, K, X[users], seed=9)
    b = loaded.recommend_with_exploration(users, K, X[users], seed=9)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # Artefacts saved before exploration existed load with no cold items: nothing explored.
    del explorer.__dict__["exploration_priority_"]
    try:
        path = tmp_path / "old.npz"
        with np.load(loaded.save(tmp_path / "full"), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "exploration_priority_"}
        np.savez(path, **arrays)
        old = Recipe.load(path)
        assert not old.recommend_with_exploration(users, K, X[users], seed=9)[2].any()
    finally:
        explorer.exploration_priority_ = loaded.exploration_priority_


# --- fitting ----------------------------------------------------------------------------------
def test_priority_prefers_new_little_seen_items():
    users = np.array([0, 3, 0, 2, 40, 0])
    impressions = np.array([0, 0, 200, 0, 500, 0])
    age = np.array([1, 1, 1, 400, 1, np.nan])
    p = exploration_priority(
        users=users, impressions=impressions, age_days=age, cut_off_days=30, min_interactions=5
    )
    assert p[0] > p[1] > 0, "fewer interactions, higher priority"
    assert 0 < p[2] < 0.3 * p[0], "shown 200 times without interaction: explored less"
    assert 0 < p[3] < p[1], "old but few interactions: a candidate, below new ones"
    assert p[5] > 0, "unknown age, no interactions: a candidate"
    assert p[4] > 0, "new, even if popular already"
    p_old = exploration_priority(
        users=np.array([40]), impressions=None, age_days=np.array([400.0]), cut_off_days=30,
        min_interactions=5,
    )  # fmt: skip
    assert p_old[0] == 0, "old and well-known: not a candidate"


def test_item_age_falls_back_to_first_interaction_and_inputs_are_optional(shop):
    X, kw = shop["X"], shop["kwargs"]
    no_catalogue = get_recipe("user-personalization")(factors=8, iterations=2)
    no_catalogue.fit(X, timestamps=kw["timestamps"])
    ts_first = np.full(X.shape[1], np.inf)
    np.minimum.at(ts_first, X.indices, kw["timestamps"])
    interacted = np.isfinite(ts_first)
    expected = (kw["timestamps"].max() - ts_first[interacted]) / DAY
    np.testing.assert_allclose(no_catalogue.item_age_days_[interacted], expected, rtol=1e-4)
    assert np.isnan(no_catalogue.item_age_days_[~interacted]).all()
    # Nothing but X: ages unknown, items with few users are still candidates.
    bare = get_recipe("user-personalization")(factors=8, iterations=2).fit(X)
    few = np.bincount(X.indices, minlength=X.shape[1]) < 5
    np.testing.assert_array_equal(bare.exploration_priority_ > 0, few)
    items, _, explored = bare.recommend_with_exploration(np.arange(20), K, X[:20], seed=0)
    check_lists(items, explored, X[:20])


def test_bad_exploration_inputs_say_what_is_wrong(shop):
    X = shop["X"]
    als = get_recipe("user-personalization")
    with pytest.raises(ValueError, match="exploration_weight must be between 0 and 1"):
        als(exploration_weight=1.5).fit(X)
    with pytest.raises(ValueError, match="exploration_item_age_cut_off must be > 0"):
        als(exploration_item_age_cut_off=0).fit(X)
    with pytest.raises(ValueError, match=r"impressions must have one value per item column"):
        als(factors=8, iterations=2).fit(X, impressions=np.ones(3))
    with pytest.raises(ValueError, match="item_features has 2 rows but the matrix has 300"):
        als(factors=8, iterations=2).fit(X, item_features=[{"TITLE": "a"}, {"TITLE": "b"}])
