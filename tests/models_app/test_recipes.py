"""Recipes: protocol conformance for every registered recipe, plus quality on the demo shop.

Quality tests check that each recipe finds structure planted by ``build_demo_shop`` (segment
category affinities, trending items), with margins rather than exact numbers. No database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.ingest.demo import build_demo_shop
from models_app.recipes import (
    RECIPES,
    Recipe,
    aggregate_events,
    available_recipes,
    get_recipe,
    top_k,
)
from models_app.recipes.trending import TREND_WINDOWS


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop():
    s = build_demo_shop(n_users=600, n_items=300, n_interactions=40_000, seed=1)
    item_ids = s.items.ITEM_ID.to_numpy()
    item_row = {item: n for n, item in enumerate(item_ids)}
    user_ids = s.users.USER_ID.to_numpy()
    user_row = {user: n for n, user in enumerate(user_ids)}
    events = s.interactions
    users = events.USER_ID.map(user_row).to_numpy()
    items = events.ITEM_ID.map(item_row).to_numpy()
    X, fit_kwargs = aggregate_events(
        users,
        items,
        (len(user_ids), len(item_ids)),
        timestamps=events.TIMESTAMP.to_numpy(),
        event_types=events.EVENT_TYPE.to_numpy(),
    )
    # Purchases grouped by session: the baskets of frequently-bought-together.
    bought = events.EVENT_TYPE.to_numpy() == "purchase"
    session = pd.factorize(events.SESSION_ID[bought])[0]
    fit_kwargs["sessions"] = sp.csr_matrix(
        (np.ones(len(session)), (session, items[bought])), shape=(session.max() + 1, len(item_ids))
    )
    fit_kwargs["item_features"] = s.items
    # As training passes them: times each item was shown in impression lists, and "now".
    shown = events.IMPRESSION.fillna("").str.split("|").explode()
    shown = shown[shown != ""].map(item_row).to_numpy()
    fit_kwargs["impressions"] = np.bincount(shown, minlength=len(item_ids)).astype(float)
    fit_kwargs["now"] = float(events.TIMESTAMP.max())
    category = s.items.CATEGORY.str.split("|").str[0].to_numpy()
    return {
        "X": X,
        "kwargs": fit_kwargs,
        "truth": s.ground_truth,
        "item_row": item_row,
        "user_row": user_row,
        "category": category,
        "events": events,
    }


@pytest.fixture(scope="module")
def fitted(shop):
    return {
        name: cls().fit(shop["X"], **shop["kwargs"])  # every recipe on its defaults
        for name, cls in RECIPES.items()
    }


def holdout(X: sp.csr_matrix, share: float = 0.2, seed: int = 0):
    """Per user, a random ``share`` of their items as test (users with >= 5 items)."""
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(X)
    train, test = X.tolil(copy=True), sp.lil_matrix(X.shape, dtype=np.float32)
    for u in range(X.shape[0]):
        items = X.indices[X.indptr[u] : X.indptr[u + 1]]
        if len(items) < 5:
            continue
        held = rng.choice(items, size=max(1, int(share * len(items))), replace=False)
        train[u, held] = 0
        test[u, held] = 1
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    return train, sp.csr_matrix(test)


def recall_at(model: Recipe, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10) -> float:
    users = np.flatnonzero(np.diff(test.indptr))
    items, _ = model.recommend(users, k, exclude=train[users])
    hits = [
        np.isin(items[n], test.indices[test.indptr[u] : test.indptr[u + 1]]).sum()
        / (test.indptr[u + 1] - test.indptr[u])
        for n, u in enumerate(users)
    ]
    return float(np.mean(hits))


# --- registry -------------------------------------------------------------------------------
def test_registry_lists_the_recipes_with_documented_parameters():
    names = {r["name"] for r in available_recipes()}
    assert names == {
        "popularity-count",
        "trending-now",
        "ease",
        "item-knn",
        "user-personalization",
        "personalized-ranking",
        "frequently-bought-together",
        "content-based",
        "segment-affinity",
    }
    for entry in available_recipes():
        assert entry["description"]
        assert get_recipe(entry["name"]).name == entry["name"]
        for param, spec in entry["parameters"].items():
            assert spec["doc"], f"{entry['name']}.{param} is undocumented"


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(KeyError, match="Valid recipes: .*ease"):
        get_recipe("deep-magic")


# --- protocol conformance, every recipe -------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recommend_shapes_order_and_exclude(name, fitted, shop):
    model, X = fitted[name], shop["X"]
    users = np.array([0, 5, 17, 599])
    items, scores = model.recommend(users, 10, exclude=X[users])
    assert items.shape == scores.shape == (4, 10)
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must be best first"
    for n, u in enumerate(users):
        row = items[n][items[n] >= 0]
        assert len(set(row.tolist())) == len(row)
        assert not np.isin(row, X[u].indices).any(), "an excluded item was recommended"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_k_above_catalogue_is_padded(name, fitted, shop):
    model, X = fitted[name], shop["X"]
    n_items = X.shape[1]
    items, scores = model.recommend(np.array([3]), n_items + 7, exclude=X[[3]])
    n_valid = n_items - X[3].nnz
    assert (items[0] >= 0).sum() == n_valid
    assert np.all(items[0, n_valid:] == -1) and np.all(np.isneginf(scores[0, n_valid:]))
    assert np.all(np.isfinite(scores[0, :n_valid]))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_save_load_gives_identical_recommendations(name, fitted, shop, tmp_path):
    model = fitted[name]
    users = np.arange(0, 600, 37)
    exclude = shop["X"][users]
    path = model.save(tmp_path / name)
    for loader in (Recipe.load, type(model).load):
        loaded = loader(path)
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        a, b = model.recommend(users, 10, exclude=exclude), loaded.recommend(users, 10, exclude)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    with np.load(path, allow_pickle=False) as data:  # loadable without pickle
        assert "__recipe_meta__" in data.files


# Side inputs a recipe cannot do without: it must refuse clearly instead.
REQUIRED = {("content-based", "item_features"): "needs item_features"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_side_input_is_optional(name, shop):
    # Training passes whatever the project has; any one of the side inputs may be missing.
    # Fitting never changes the caller's matrix.
    X = shop["X"]
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    for missing in ("item_features", "impressions", "now", "sessions"):
        kwargs = {k: v for k, v in shop["kwargs"].items() if k != missing}
        model = get_recipe(name)()
        if (name, missing) in REQUIRED:
            with pytest.raises(ValueError, match=REQUIRED[name, missing]):
                model.fit(shop["X"], **kwargs)
            continue
        items, _ = model.fit(X, **kwargs).recommend(np.array([0, 1]), 5)
        assert (items >= 0).all(), f"{name} without {missing}"
        for array, original in zip((X.data, X.indices, X.indptr), before, strict=True):
            np.testing.assert_array_equal(array, original, err_msg=f"{name} changed X")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_params_round_trip(name):
    cls = get_recipe(name)
    model = cls()
    assert cls(**model.get_params()).get_params() == model.get_params()
    assert all(not p.endswith("_") for p in model.get_params())
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        model.set_params(bogus=1)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_bad_inputs_say_what_is_wrong(name, fitted, shop):
    model, X = fitted[name], shop["X"]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(np.array([0]), -3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(np.array([0]), 0)
    with pytest.raises(ValueError, match=r"user_rows out of range: \[600\]"):
        model.recommend(np.array([1, 600]), 5)
    with pytest.raises(ValueError, match="1-D array"):
        model.recommend(np.array([[1, 2]]), 5)
    with pytest.raises(ValueError, match="exclude must have shape"):
        model.recommend(np.array([1, 2]), 5, exclude=X)
    fresh = get_recipe(name)()
    with pytest.raises(ValueError, match="not fitted"):
        fresh.recommend(np.array([0]), 5)
    with pytest.raises(ValueError, match="no non-zero entries"):
        fresh.fit(sp.csr_matrix((4, 6)))
    with pytest.raises(ValueError, match="empty"):
        fresh.fit(sp.csr_matrix((0, 6)))
    with pytest.raises(ValueError, match="negative weights"):
        fresh.fit(sp.csr_matrix(np.array([[1.0, -2.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="scipy.sparse matrix"):
        fresh.fit([[1, 0], [0, 1]])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_similar_items_is_supported_or_refused_clearly(name, fitted):
    model = fitted[name]
    if not hasattr(model, "_score_similar"):
        with pytest.raises(NotImplementedError, match="does not support similar_items"):
            model.similar_items(np.array([0]), 5)
        return
    items, scores = model.similar_items(np.array([0, 10, 299]), 8)
    assert items.shape == scores.shape == (3, 8)
    assert not np.any(items == np.array([[0], [10], [299]])), "an item is not its own neighbour"
    for row, values in zip(items, scores, strict=True):
        n = (row >= 0).sum()
        assert np.all(row[n:] == -1) and np.all(np.isneginf(values[n:])), "padding at the end"
        assert np.all(np.diff(values[:n]) <= 0), "best first"
    with pytest.raises(ValueError, match="item_rows out of range"):
        model.similar_items(np.array([300]), 5)


# --- helpers --------------------------------------------------------------------------------
def test_top_k_pads_and_never_returns_masked_items():
    scores = np.array([[0.1, -np.inf, 0.5, 0.3], [-np.inf, -np.inf, -np.inf, 2.0]], np.float32)
    items, values = top_k(scores, 6)
    np.testing.assert_array_equal(items, [[2, 3, 0, -1, -1, -1], [3, -1, -1, -1, -1, -1]])
    assert np.isneginf(values[0, 3:]).all() and values[1, 0] == 2.0


def test_aggregate_events_keeps_latest_time_and_type_per_cell():
    X, kw = aggregate_events(
        np.array([0, 0, 1, 0]),
        np.array([2, 2, 0, 1]),
        (2, 3),
        timestamps=np.array([10, 30, 5, 20]),
        event_types=np.array(["view", "purchase", "view", "cart"]),
    )
    np.testing.assert_array_equal(X.toarray(), [[0, 1, 2], [1, 0, 0]])
    np.testing.assert_array_equal(kw["timestamps"], [20, 30, 5])  # CSR order: (0,1) (0,2) (1,0)
    assert kw["event_types"].tolist() == ["cart", "purchase", "view"]


# --- quality on the demo shop ---------------------------------------------------------------
def test_personalised_recipes_beat_popularity_clearly(shop):
    train, test = holdout(shop["X"])
    popularity = recall_at(get_recipe("popularity-count")().fit(train), train, test)
    for name in ("user-personalization", "ease", "item-knn"):
        recall = recall_at(get_recipe(name)().fit(train), train, test)
        assert recall >= 1.3 * popularity, f"{name}: recall@10 {recall:.3f} vs pop {popularity:.3f}"


def test_best_sellers_count_distinct_buyers(shop):
    X, kw = shop["X"], shop["kwargs"]
    model = get_recipe("popularity-count")(event_types=["purchase"]).fit(X, **kw)
    buyers = pd.Series(kw["event_types"] == "purchase").groupby(X.indices).sum()
    top = model.recommend(np.array([0]), 5)[0][0]
    assert buyers.loc[top].tolist() == sorted(buyers, reverse=True)[:5]
    with pytest.raises(ValueError, match="no event_types"):
        get_recipe("popularity-count")(event_types=["purchase"]).fit(X)


def test_trending_now_finds_the_planted_trending_items(fitted, shop):
    # Default parameters: trend_window="auto" must find the planted 3-day trend on its own.
    trending = {shop["item_row"][i] for i in shop["truth"]["trending_items"]}
    model = fitted["trending-now"]
    assert model.trend_window == "auto"
    top = model.recommend(np.array([0]), 10)[0][0]
    assert len(trending & set(top.tolist())) >= 0.75 * len(trending)
    assert model.trend_window_ in TREND_WINDOWS
    with pytest.raises(ValueError, match="needs timestamps"):
        get_recipe("trending-now")().fit(shop["X"])
    with pytest.raises(ValueError, match="trend_window must be one of"):
        get_recipe("trending-now")(trend_window="5min").fit(shop["X"], **shop["kwargs"])


def hourly_trend(n_items: int = 40, seed: int = 0):
    """A busy shop: every item gets one event per hour for a week, items 0-3 jump in the last
    hour (20 extra events each). Every event is its own user."""
    rng = np.random.default_rng(seed)
    now = 2_000_000
    items, ts = [], []
    for hour in range(7 * 24):
        items += list(range(n_items))
        ts += list(now - hour * 3_600 - rng.integers(1, 3_600, n_items))
    for item in range(4):
        items += [item] * 20
        ts += list(now - rng.integers(0, 3_600, 20))
    items = np.array(items)
    X, kw = aggregate_events(np.arange(len(items)), items, (len(items), n_items), timestamps=ts)
    return X, kw


def test_trending_now_auto_picks_a_short_window_for_an_hourly_trend():
    X, kw = hourly_trend()
    model = get_recipe("trending-now")().fit(X, **kw)
    assert TREND_WINDOWS[model.trend_window_] <= 3_600, model.trend_window_
    assert set(model.recommend(np.array([0]), 4)[0][0].tolist()) == {0, 1, 2, 3}
    # The same shop with the last day thinned to one event in 24: the short windows hold too
    # few events to rank, so auto falls back to a longer window.
    keep = (kw["timestamps"].max() - kw["timestamps"] >= 3_600 * 24) | (np.arange(X.nnz) % 24 == 0)
    thin = sp.csr_matrix((X.data[keep], X.indices[keep], np.r_[0, np.cumsum(keep)]), X.shape)
    slow = get_recipe("trending-now")().fit(thin, timestamps=kw["timestamps"][keep])
    assert TREND_WINDOWS[slow.trend_window_] > 3_600, slow.trend_window_


def test_trending_now_auto_uses_the_longest_window_when_data_is_scarce():
    X, kw = aggregate_events(np.arange(5), np.arange(5), (5, 5), timestamps=np.arange(5) * 9e5)
    model = get_recipe("trending-now")().fit(X, **kw)
    assert model.trend_window_ == "7d"


def test_trending_now_smoothing_keeps_tiny_counts_from_dominating():
    # item 0: 0 -> 2 users in the last hour; item 1: 20 -> 60 users; item 2: flat 10 -> 10.
    now = 100_000
    rows, items, ts = [], [], []
    for item, before, after in ((0, 0, 2), (1, 20, 60), (2, 10, 10)):
        for n in range(before + after):
            rows.append(len(rows))
            items.append(item)
            ts.append(now - 5_000 if n < before else now - 60)
    X, kw = aggregate_events(np.array(rows), np.array(items), (len(rows), 3), timestamps=ts)
    model = get_recipe("trending-now")(trend_window="1h", now=now).fit(X, **kw)
    assert model.recommend(np.array([0]), 3)[0][0].tolist() == [1, 0, 2]


@pytest.mark.parametrize("name", ["item-knn", "ease", "user-personalization", "content-based"])
def test_similar_items_share_the_category(name, fitted, shop):
    category = shop["category"]
    neighbours, _ = fitted[name].similar_items(np.arange(len(category)), 10)
    valid = neighbours >= 0
    same = (category[np.where(valid, neighbours, 0)] == category[:, None])[valid].mean()
    chance = (pd.Series(category).value_counts(normalize=True) ** 2).sum()
    assert same >= 2.5 * chance, f"{name}: {same:.2f} of neighbours share the category"


def test_frequently_bought_together_finds_the_planted_bundles(fitted, shop):
    rows = shop["item_row"]
    model = fitted["frequently-bought-together"]
    found = [
        rows[b] in model.similar_items(np.array([rows[a]]), 3)[0][0]
        for a, b in shop["truth"]["bundles"]
    ]
    assert sum(found) >= 0.8 * len(found), found
    with pytest.raises(ValueError, match="sessions must be a scipy.sparse"):
        model.fit(shop["X"], sessions=np.ones((3, 300)))


def test_content_based_serves_items_nobody_has_seen(shop):
    # Drop every interaction with the first 30 items: they still get same-category neighbours,
    # and a user who liked Audio items gets Audio recommendations, among them unseen items.
    X, category = shop["X"].tolil(copy=True), shop["category"]
    X[:, :30] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    features = shop["kwargs"]["item_features"].to_dict("records")  # list of dicts works too
    model = get_recipe("content-based")().fit(X, item_features=features)
    neighbours, _ = model.similar_items(np.arange(30), 5)
    assert np.mean(category[neighbours] == category[:30, None]) >= 0.6
    audio = np.flatnonzero(category == "Audio")
    fan = sp.lil_matrix((1, X.shape[1]))
    fan[0, audio[audio >= 30][:4]] = 1
    items, _ = model.fit(sp.vstack([X, fan]), item_features=features).recommend(
        np.array([X.shape[0]]), 10, exclude=sp.csr_matrix(fan)
    )
    assert np.mean(category[items[0]] == "Audio") >= 0.7
    with pytest.raises(ValueError, match="needs item_features"):
        get_recipe("content-based")().fit(X)
    with pytest.raises(ValueError, match="has 2 rows but the matrix has 300 items"):
        get_recipe("content-based")().fit(X, item_features=features[:2])


def test_ease_refuses_large_catalogues_clearly(shop):
    with pytest.raises(ValueError, match="refuses 300 items: above max_items=100"):
        get_recipe("ease")(max_items=100).fit(shop["X"])


# --- user-personalization: real-time updates and weighting ------------------------------------
def test_fold_in_reproduces_the_trained_user_vectors(fitted, shop):
    model = fitted["user-personalization"]
    users = np.arange(0, 600, 50)
    folded = model.fold_in(shop["X"][users])
    scores_fit = model.user_factors_[users] @ model.item_factors_.T
    scores_fold = folded @ model.item_factors_.T
    for a, b in zip(scores_fit, scores_fold, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.99


def test_fold_in_moves_recommendations_towards_new_interests(fitted, shop):
    # "Techies" (Electronics, Audio) who then look at six Kitchen items: without retraining,
    # Kitchen's share of their top 10 must go up. The six are the category's 5th-10th most
    # popular items, so its best sellers remain to be recommended.
    model, X, category = fitted["user-personalization"], shop["X"], shop["category"]
    popular = np.argsort(-np.asarray((X > 0).sum(axis=0)).ravel())
    kitchen = [i for i in popular if category[i] == "Kitchen"][4:10]
    gains = []
    for user_id in shop["truth"]["segments"][2]["users"][:20]:
        history = X[shop["user_row"][user_id]].indices
        new = np.setdiff1d(kitchen, history)
        before, _ = model.recommend_for_items(history, k=10)
        after, _ = model.recommend_for_items(np.r_[history, new], k=10)
        assert not np.isin(after, new).any(), "the user's own new items are excluded by default"
        gains.append(np.mean(category[after] == "Kitchen") - np.mean(category[before] == "Kitchen"))
    assert np.mean(gains) >= 0.15 and np.mean(np.array(gains) > 0) >= 0.8, gains
    with pytest.raises(ValueError, match="columns"):
        model.fold_in(np.ones(5))


def test_als_options_need_their_inputs(shop):
    X, kw = shop["X"], shop["kwargs"]
    als = get_recipe("user-personalization")
    with pytest.raises(ValueError, match="no timestamps"):
        als(half_life_days=7, factors=8, iterations=2).fit(X)
    with pytest.raises(ValueError, match="weighting must be one of"):
        als(weighting="tfidf").fit(X)
    decayed = als(half_life_days=7, event_weights={"purchase": 4}, factors=8, iterations=2)
    decayed.fit(X, **kw)
    plain = als(factors=8, iterations=2).fit(X, **kw)
    assert not np.allclose(decayed.item_factors_, plain.item_factors_)


# --- personalized-ranking ---------------------------------------------------------------------
def segment_candidates(shop, segment: dict, n_each: int = 10, seed: int = 0):
    """A shuffled mix of ``n_each`` items of the segment's categories and ``n_each`` others."""
    rng = np.random.default_rng(seed)
    category = shop["category"]
    liked = np.isin(category, segment["categories"])
    ours = rng.choice(np.flatnonzero(liked), n_each, replace=False)
    others = rng.choice(np.flatnonzero(~liked), n_each, replace=False)
    return rng.permutation(np.r_[ours, others]), liked


def test_personalized_ranking_puts_the_users_segment_first(fitted, shop):
    # 20 users of each planted segment: re-rank 10 items of their favoured categories mixed
    # with 10 others. Chance (and popularity, which ignores the user) puts about half of the
    # top 10 in the favoured categories.
    model, X = fitted["personalized-ranking"], shop["X"]
    known, folded, popular = [], [], []
    for segment in shop["truth"]["segments"]:
        for user_id in segment["users"][:20]:
            user = shop["user_row"][user_id]
            candidates, liked = segment_candidates(shop, segment, seed=user)
            ranked, scores = model.rank(user, candidates)
            assert np.all(np.diff(scores) <= 0)
            known.append(liked[ranked[:10]].mean())
            # The same user unknown to the model: fold in their history instead.
            history = X[user].indices
            ranked, _ = model.rank_for_items(history, candidates, weights=X[user].data)
            folded.append(liked[ranked[:10]].mean())
            popular.append(liked[fitted["popularity-count"].rank(user, candidates)[0][:10]].mean())
    assert np.mean(known) >= 0.8, np.mean(known)
    assert np.mean(folded) >= 0.8, np.mean(folded)
    assert np.mean(known) >= np.mean(popular) + 0.25, (np.mean(known), np.mean(popular))


def test_personalized_ranking_for_unknown_users_validates_and_keeps_order(fitted):
    model = fitted["personalized-ranking"]
    ranked, scores = model.rank_for_items([], [5, 3, 9, 3])
    assert ranked.tolist() == [5, 3, 9] and np.all(scores == 0), "no history: caller's order"
    with pytest.raises(ValueError, match=r"item_rows out of range: \[-1\]"):
        model.rank_for_items([1, 2], [4, -1])
    with pytest.raises(ValueError, match="item_rows must be in 0..299"):
        model.rank_for_items([1, 999], [4, 5])
    with pytest.raises(ValueError, match="weights must have one value per item row"):
        model.rank_for_items([1, 2], [4, 5], weights=[1.0])
