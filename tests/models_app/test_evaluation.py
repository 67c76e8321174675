"""Splits, ranking metrics and the evaluation harness (Django-free, no database)."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models_app.evaluation import metrics as metrics_module
from models_app.evaluation.harness import evaluate_recipe
from models_app.evaluation.metrics import evaluate_rankings
from models_app.evaluation.splits import Split, personalize_split, protocol_r_split

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


def random_interactions(n_users=60, n_items=40, seed=0):
    """Users with 1..35 distinct items, plus some duplicate rows, in shuffled order."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        n = rng.integers(1, min(36, n_items + 1))
        chosen = rng.choice(n_items, size=n, replace=False)
        users += [u] * n
        items += list(chosen)
    users, items = np.array(users), np.array(items)
    dup = rng.choice(len(users), size=len(users) // 5)
    users, items = np.concatenate([users, users[dup]]), np.concatenate([items, items[dup]])
    order = rng.permutation(len(users))
    return users[order], items[order]


def pairs(matrix):
    coo = sp.coo_matrix(matrix)
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def csr(rows, n_items):
    """CSR from a list of per-user item lists."""
    users = [u for u, items in enumerate(rows) for _ in items]
    items = [i for row in rows for i in row]
    return sp.csr_matrix((np.ones(len(items)), (users, items)), shape=(len(rows), n_items))


# --- Protocol R split -----------------------------------------------------------------------


def test_protocol_r_sizes_follow_the_floor_rule_and_parts_are_disjoint():
    users, items = random_interactions()
    split = protocol_r_split(users, items, 60, 40, seed=3)
    distinct = {(int(u), int(i)) for u, i in zip(users, items, strict=True)}
    train, valid, test = pairs(split.train), pairs(split.valid), pairs(split.test)

    assert not train & valid and not train & test and not valid & test
    assert train | valid | test == distinct  # duplicates dropped, nothing lost
    for u in range(60):
        n = sum(1 for user, _ in distinct if user == u)
        assert split.valid[u].nnz == n // 10
        assert split.test[u].nnz == n // 10
        assert split.train[u].nnz == n - 2 * (n // 10)
    for part in (split.train, split.valid, split.test):
        assert part.shape == (60, 40)
        assert set(np.unique(part.data)) <= {1.0}


def test_protocol_r_is_deterministic_per_seed_and_ignores_input_order():
    users, items = random_interactions()
    first = protocol_r_split(users, items, 60, 40, seed=7)
    again = protocol_r_split(users, items, 60, 40, seed=7)
    order = np.random.default_rng(1).permutation(len(users))
    shuffled = protocol_r_split(users[order], items[order], 60, 40, seed=7)
    other = protocol_r_split(users, items, 60, 40, seed=8)

    for part in ("train", "valid", "test"):
        assert pairs(getattr(first, part)) == pairs(getattr(again, part))
        assert pairs(getattr(first, part)) == pairs(getattr(shuffled, part))
    assert pairs(first.test) != pairs(other.test)


def test_protocol_r_rejects_rows_outside_the_stated_shape():
    with pytest.raises(ValueError, match="item_idx must lie in"):
        protocol_r_split(np.array([0, 1]), np.array([0, 5]), 2, 5, seed=0)


# --- Personalize split ----------------------------------------------------------------------


def test_personalize_split_holds_out_the_newest_items_of_chosen_users_only():
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 300
    users = np.repeat(np.arange(n_users), 30)
    items = np.concatenate([rng.choice(n_items, 30, replace=False) for _ in range(n_users)])
    times = rng.integers(0, 10_000, size=len(users))

    split = personalize_split(users, items, times, n_users, n_items, seed=4)

    chosen = split.users_with("test")
    assert len(chosen) == 20  # 10% of users
    assert split.valid.nnz == 0
    assert not pairs(split.train) & pairs(split.test)
    assert split.train.nnz + split.test.nnz == len(users)
    for u in range(n_users):
        held = set(split.test[u].indices.tolist())
        if u not in chosen:
            assert not held and split.train[u].nnz == 30
            continue
        assert len(held) == 3  # newest 10% of 30
        mask = users == u
        held_times = [t for i, t in zip(items[mask], times[mask], strict=True) if i in held]
        kept_times = [t for i, t in zip(items[mask], times[mask], strict=True) if i not in held]
        assert min(held_times) >= max(kept_times)

    again = personalize_split(users, items, times, n_users, n_items, seed=4)
    assert pairs(again.test) == pairs(split.test)
    assert pairs(personalize_split(users, items, times, n_users, n_items, seed=5).test) != pairs(
        split.test
    )


def test_personalize_split_counts_a_repeated_item_once_at_its_newest_time():
    # User 0 saw item 1 at t=1 and again at t=9: it is the newest, so it is held out, and it
    # must not stay in train.
    users = np.array([0] * 11 + [1, 1])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 0, 1])
    times = np.array([1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 9, 1, 2])
    split = personalize_split(users, items, times, 2, 11, seed=0, user_share=0.5)
    assert split.users_with("test").tolist() in ([0], [1])
    if split.test[0].nnz:
        assert split.test[0].indices.tolist() == [1]
        assert split.train[0, 1] == 0


# --- metrics --------------------------------------------------------------------------------


def test_hand_computed_precision_recall_ndcg_mrr():
    test = csr([[1, 3], [3]], 6)
    train = csr([[0], [0]], 6)
    recommended = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    result = evaluate_rankings(recommended, test, train, ks=(2, 5))

    d = 1 / np.log2(np.arange(2, 7))  # discounts at ranks 1..5
    # user 0: hits at ranks 2 and 4, |T| = 2; user 1: hit at rank 4, |T| = 1 < k
    ndcg5 = ((d[1] + d[3]) / (d[0] + d[1]) + d[3] / d[0]) / 2
    ndcg2 = (d[1] / (d[0] + d[1]) + 0.0) / 2
    assert result["ndcg@5"] == pytest.approx(ndcg5)
    assert result["ndcg@2"] == pytest.approx(ndcg2)
    assert result["recall@5"] == pytest.approx((1.0 + 1.0) / 2)
    assert result["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert result["hit@2"] == pytest.approx(0.5)
    assert result["mrr@5"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert result["mrr@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert result["n_users"] == 2


def test_users_without_test_items_are_ignored_and_padding_is_a_miss():
    test = csr([[2], [], [0, 1]], 5)
    train = csr([[], [3], []], 5)
    recommended = np.array([[2, -1, -1], [4, 3, 2], [4, -1, -1]])
    result = evaluate_rankings(recommended, test, train, ks=(3,))
    assert result["n_users"] == 2
    assert result["recall@3"] == pytest.approx(0.5)
    assert result["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert result["coverage@3"] == pytest.approx(2 / 5)  # items 2 and 4; user 1 not counted


def test_coverage_novelty_popularity_and_diversity_on_a_tiny_catalogue():
    # item 0 liked by 4 users, item 1 by 2, items 2 and 3 by one each
    train = csr([[0, 1], [0, 1], [0, 2], [0, 3]], 5)
    test = csr([[4], [4], [4], [4]], 5)
    popular = np.array([[0, 1]] * 4)
    result = evaluate_rankings(popular, test, train, ks=(2,))
    assert result["coverage@2"] == pytest.approx(2 / 5)
    assert result["novelty@2"] == pytest.approx((-np.log2(4 / 4) - np.log2(2 / 4)) / 2)
    assert result["arp@2"] == pytest.approx(3.0)
    # item 0 is the most popular of 5 items (percentile 1.0), item 1 the second (0.8)
    assert result["pop_percentile@2"] == pytest.approx(0.9)
    # co-occurrence columns: item 0 = users {0,1,2,3}, item 1 = {0,1}: cosine 2/sqrt(8)
    assert result["diversity@2"] == pytest.approx(1 - 2 / np.sqrt(8))

    features = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]])
    same = evaluate_rankings(np.array([[0, 2, 3]] * 4), test, train, (3,), item_features=features)
    apart = evaluate_rankings(np.array([[0, 1]] * 4), test, train, (2,), item_features=features)
    assert same["diversity@3"] == pytest.approx(0.0)
    assert apart["diversity@2"] == pytest.approx(1.0)


def test_diversity_is_the_same_with_and_without_the_item_gram_matrix(monkeypatch):
    users, items = random_interactions(80, 50, seed=2)
    split = protocol_r_split(users, items, 80, 50, seed=0)
    recommended = np.array([np.random.default_rng(u).permutation(50)[:10] for u in range(80)])
    recommended[::7, 8:] = -1
    dense = evaluate_rankings(recommended, split.test, split.train, ks=(5, 10))
    monkeypatch.setattr(metrics_module, "_MAX_GRAM_ITEMS", 0)
    chunked = evaluate_rankings(recommended, split.test, split.train, ks=(5, 10))
    for k in (5, 10):
        assert chunked[f"diversity@{k}"] == pytest.approx(dense[f"diversity@{k}"])


def test_a_perfect_recommender_scores_one():
    users, items = random_interactions(100, 60, seed=5)
    split = protocol_r_split(users, items, 100, 60, seed=1)
    recommended = np.full((100, 10), -1)
    for u in range(100):
        held = split.test[u].indices
        rest = np.setdiff1d(np.arange(60), held)[: 10 - len(held)]
        recommended[u] = np.concatenate([held, rest])
    result = evaluate_rankings(recommended, split.test, split.train, ks=(3, 10))
    assert result["n_users"] > 20
    for name in ("ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@3", "hit@3"):
        assert result[name] == pytest.approx(1.0), name


def test_a_random_recommender_scores_near_its_expectation():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 2000, 200, 10
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.05).astype(float))
    train = sp.csr_matrix((n_users, n_items))
    recommended = np.array([rng.choice(n_items, k, replace=False) for _ in range(n_users)])
    result = evaluate_rankings(recommended, test, train, ks=(k,))
    sizes = np.diff(test.indptr)
    assert result["precision@10"] == pytest.approx(np.mean(sizes[sizes > 0]) / n_items, rel=0.1)
    assert result["recall@10"] == pytest.approx(k / n_items, rel=0.1)
    assert result["coverage@10"] == pytest.approx(1.0)


def test_empty_lists_score_zero_without_failing():
    test, train = csr([[1], [2]], 4), csr([[0], [0]], 4)
    result = evaluate_rankings(np.full((2, 3), -1), test, train, ks=(3,))
    assert result["ndcg@3"] == result["coverage@3"] == result["diversity@3"] == 0.0


def test_metrics_reject_lists_shorter_than_the_cut_offs():
    test, train = csr([[1]], 3), csr([[0]], 3)
    with pytest.raises(ValueError, match="at most the list length 2"):
        evaluate_rankings(np.array([[1, 2]]), test, train, ks=(5,))


# --- harness --------------------------------------------------------------------------------


class Oracle:
    """Knows the answers; records what it was asked, to check fitting and masking."""

    def __init__(self, answers):
        self.answers = answers

    def fit(self, X):
        self.fitted_on = X
        return self

    def recommend(self, user_rows, k, exclude=None):
        self.exclude = exclude
        rows = []
        for u, masked in zip(user_rows, exclude, strict=True):
            wanted = list(self.answers[u].indices)
            others = [i for i in range(self.answers.shape[1]) if i not in wanted]
            listed = [i for i in wanted + others if i not in set(masked.indices)][:k]
            rows.append(listed + [-1] * (k - len(listed)))
        return np.array(rows), np.zeros((len(rows), k))


def small_split():
    users, items = random_interactions(50, 30, seed=9)
    return protocol_r_split(users, items, 50, 30, seed=0)


def test_evaluate_recipe_fits_on_train_and_masks_train_and_valid_in_the_test_phase():
    split = small_split()
    oracle = Oracle(split.test)
    result = evaluate_recipe(lambda: oracle, split, k=10)
    assert oracle.fitted_on is split.train
    assert result["ndcg@10"] == pytest.approx(1.0)
    assert {"ndcg@5", "recall@10", "coverage@10", "fit_seconds", "recommend_seconds"} <= set(result)
    expected = (split.train + split.valid)[split.users_with("test")]  # one batch of users
    assert (oracle.exclude != expected).nnz == 0


def test_evaluate_recipe_valid_phase_scores_valid_and_masks_train_only():
    split = small_split()
    oracle = Oracle(split.valid)
    result = evaluate_recipe(lambda: oracle, split, k=5, phase="valid")
    assert result["n_users"] == len(split.users_with("valid"))
    assert result["recall@5"] == pytest.approx(1.0)
    assert (oracle.exclude != split.train[split.users_with("valid")]).nnz == 0


def test_evaluate_recipe_refuses_a_recipe_that_recommends_masked_items():
    class Cheater(Oracle):
        def recommend(self, user_rows, k, exclude=None):
            first = exclude.indices[exclude.indptr[0]]
            return np.full((len(user_rows), 1), first), np.zeros((len(user_rows), 1))

    split = small_split()
    with pytest.raises(ValueError, match="passed in exclude"):
        evaluate_recipe(lambda: Cheater(split.test), split, k=5)


def test_split_object_reports_its_users():
    split = Split(csr([[0], [1]], 2), csr([[], []], 2), csr([[], [0]], 2))
    assert split.shape == (2, 2)
    assert split.users_with("test").tolist() == [1]


@pytest.mark.slow
def test_protocol_r_on_ml_100k_has_the_expected_sizes():
    path = DATA_DIR / "ml-100k" / "original" / "u.data"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    data = np.loadtxt(path, dtype=np.int64)
    users, items = data[:, 0] - 1, data[:, 1] - 1
    split = protocol_r_split(users, items, 943, 1682, seed=0)
    counts = np.bincount(users, minlength=943)
    assert split.test.nnz == split.valid.nnz == int((counts // 10).sum())
    assert split.train.nnz + 2 * split.test.nnz == 100_000
