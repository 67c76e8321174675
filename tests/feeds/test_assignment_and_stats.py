"""Stable assignment of users to variants and the statistics of the results (no database)."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from feeds.engine import assignment, stats
from feeds.engine.assignment import AssignmentError

IDS = [f"user-{i}" for i in range(20_000)]
NAMES = ["control", "b", "c"]


# --------------------------------------------------------------------------- assignment


def test_the_same_user_gets_the_same_variant_on_every_call():
    first = [assignment.assign(u, NAMES, [1, 1, 1], "salt-1") for u in IDS[:500]]
    again = [assignment.assign(u, NAMES, [1, 1, 1], "salt-1") for u in IDS[:500]]
    assert first == again
    assert set(first) == {0, 1, 2}


def test_the_vectorised_assignment_agrees_with_the_single_one():
    many = assignment.assign_many(IDS, NAMES, [2, 1, 1], "salt-1")
    single = [assignment.assign(u, NAMES, [2, 1, 1], "salt-1") for u in IDS[:3000]]
    assert many[:3000].tolist() == single


def test_assignment_is_the_same_in_another_process():
    code = (
        "from feeds.engine.assignment import assign_many;"
        f"print(','.join(map(str, assign_many({IDS[:300]!r}, {NAMES!r}, [1, 2, 3], 'x'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    here = assignment.assign_many(IDS[:300], NAMES, [1, 2, 3], "x").tolist()
    assert out == ",".join(map(str, here))


@pytest.mark.parametrize("weights", [[1, 1], [3, 1], [1, 1, 1], [5, 3, 2]])
def test_the_split_follows_the_weights_on_20k_ids(weights):
    names = NAMES[: len(weights)]
    counts = np.bincount(
        assignment.assign_many(IDS, names, weights, "split"), minlength=len(weights)
    )
    shares = counts / counts.sum()
    expected = assignment.expected_shares(weights)
    # 20k ids: the binomial standard error of a share is at most 0.0036; allow 4 of them.
    assert np.abs(shares - expected).max() < 0.015, (shares, expected)


def test_changing_the_salt_reshuffles_users():
    a = assignment.assign_many(IDS, ["control", "b"], [1, 1], "salt-a")
    b = assignment.assign_many(IDS, ["control", "b"], [1, 1], "salt-b")
    # Independent splits agree on about half of the users, not all (or none) of them.
    assert 0.47 < float(np.mean(a == b)) < 0.53


def test_adding_a_variant_only_moves_users_into_it():
    before = assignment.assign_many(IDS, ["control", "b"], [1, 1], "s")
    after = assignment.assign_many(IDS, ["control", "b", "c"], [1, 1, 1], "s")
    moved = before != after
    assert set(after[moved].tolist()) == {2}  # nobody moved between control and b
    assert abs(float(np.mean(after == 2)) - 1 / 3) < 0.015


def test_raising_a_weight_only_moves_users_into_that_variant():
    before = assignment.assign_many(IDS, ["control", "b", "c"], [1, 1, 1], "s")
    after = assignment.assign_many(IDS, ["control", "b", "c"], [1, 2, 1], "s")
    moved = before != after
    assert moved.any()
    assert set(after[moved].tolist()) == {1}
    assert abs(float(np.mean(after == 1)) - 0.5) < 0.015


def test_bad_variants_are_refused_with_a_message():
    with pytest.raises(AssignmentError, match="at least one variant"):
        assignment.assign("u", [], [], "s")
    with pytest.raises(AssignmentError, match="weight below 1"):
        assignment.assign("u", ["a", "b"], [1, 0], "s")
    with pytest.raises(AssignmentError, match="distinct"):
        assignment.assign("u", ["a", "a"], [1, 1], "s")


def test_unit_hash_is_in_the_open_unit_interval_and_uniform():
    values = np.array([assignment.unit_hash("s", "v", u) for u in IDS])
    assert values.min() > 0 and values.max() < 1
    assert scipy_stats.kstest(values, "uniform").pvalue > 0.001


# --------------------------------------------------------------------------- statistics


def test_wilson_interval_matches_the_hand_computed_value():
    # 30 successes out of 200, z = 1.96 (worked by hand from the formula):
    # centre = (0.15 + 1.96²/400) / (1 + 1.96²/200) = 0.159604 / 1.019208 = 0.156596
    # half = 1.96 * sqrt(0.15 * 0.85 / 200 + 1.96² / 160000) / 1.019208 = 0.049461
    low, high = stats.wilson_interval(30, 200)
    assert low == pytest.approx(0.156596 - 0.049461, abs=2e-5)
    assert high == pytest.approx(0.156596 + 0.049461, abs=2e-5)
    # The interval is not symmetric around the rate (0.15) but around the shrunk centre.
    assert 0.15 - low < high - 0.15


def test_wilson_interval_edges():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = stats.wilson_interval(0, 50)
    assert low == 0.0 and 0 < high < 0.1
    low, high = stats.wilson_interval(50, 50)
    assert 0.9 < low < 1 and high == 1.0


@pytest.mark.parametrize(
    "x1,n1,x2,n2", [(100, 2000, 130, 2000), (45, 1000, 50, 1000), (300, 5000, 240, 5100)]
)
def test_the_z_test_matches_scipys_chi_squared(x1, n1, x2, n2):
    z, p = stats.two_proportion_z_test(x1, n1, x2, n2)
    table = np.array([[x1, n1 - x1], [x2, n2 - x2]])
    chi2, p_scipy, _, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert p == pytest.approx(p_scipy, rel=1e-9)
    assert z * z == pytest.approx(chi2, rel=1e-9)
    assert (z > 0) == (x2 / n2 > x1 / n1)


def test_the_z_test_by_hand():
    # 100/2000 = 5% vs 130/2000 = 6.5%: pooled 5.75%, se = sqrt(.0575 * .9425 * 2 / 2000)
    se = math.sqrt(0.0575 * 0.9425 * (2 / 2000))
    z, p = stats.two_proportion_z_test(100, 2000, 130, 2000)
    assert z == pytest.approx(0.015 / se)
    assert p == pytest.approx(2 * scipy_stats.norm.sf(0.015 / se))


def test_required_sample_size_is_the_textbook_value():
    # 5% base, 10% relative lift, alpha 0.05, power 0.8: about 31,200 per arm.
    n = stats.required_per_arm(0.05, 0.10)
    assert 30_500 < n < 32_000
    assert stats.required_per_arm(0.0) is None


def variant(name, n, clicks, conversions=0, control=False):
    return stats.VariantStats(
        name=name, is_control=control, impressions=n, clicks=clicks, conversions=conversions
    )


def test_a_clear_difference_is_called_significant_in_words():
    result = stats.analyse(
        [variant("control", 20_000, 1000, 200, True), variant("b", 20_000, 1200, 205)]
    )
    ctr, conversion = result["comparisons"]
    assert ctr.significant and ctr.p_value < 0.001
    assert ctr.verdict.startswith("b's CTR is higher than control's (6.00% vs 5.00%), p < 0.001")
    assert not conversion.significant
    assert "No significant difference in conversion rate yet" in conversion.verdict
    assert "more impressions per variant are needed to detect a 10% lift" in conversion.verdict


def test_a_lower_variant_is_called_lower():
    result = stats.analyse([variant("control", 10_000, 600, 0, True), variant("b", 10_000, 450)])
    assert "b's CTR is lower than control's" in result["comparisons"][0].verdict


def test_small_samples_are_not_enough_data():
    result = stats.analyse([variant("control", 40, 10, 1, True), variant("b", 5000, 300, 40)])
    for comparison in result["comparisons"]:
        assert not comparison.enough_data and not comparison.significant
        assert comparison.verdict.startswith("Not enough data yet")
        assert "control has 40 impressions (at least 100)" in comparison.verdict
    few = stats.analyse([variant("control", 500, 2, 0, True), variant("b", 500, 3)])
    assert "control has 2 clicks (at least 5)" in few["comparisons"][0].verdict


def test_several_variants_share_the_significance_threshold():
    result = stats.analyse(
        [
            variant("control", 5000, 250, 50, True),
            variant("b", 5000, 300, 50),
            variant("c", 5000, 250, 50),
        ]
    )
    assert result["alpha"] == pytest.approx(0.025)
    b_ctr = result["comparisons"][0]
    # p is about 0.025 to 0.03: significant alone at 0.05, not with two comparisons.
    assert 0.025 < b_ctr.p_value < 0.05
    assert not b_ctr.significant
    assert "threshold 0.025 for 2 comparisons" in b_ctr.verdict


def test_aa_tests_are_called_significant_about_five_percent_of_the_time():
    rng = np.random.default_rng(3)
    n, p, runs = 4000, 0.05, 1000
    clicks = rng.binomial(n, p, size=(runs, 2))
    significant = sum(
        stats.analyse([variant("control", n, int(a), 0, True), variant("b", n, int(b))])[
            "comparisons"
        ][0].significant
        for a, b in clicks
    )
    assert 25 <= significant <= 80  # 5% of 1000 = 50, binomial sd about 7


def test_planted_lifts_are_detected_with_the_expected_power():
    rng = np.random.default_rng(4)
    base, lift = 0.05, 0.10
    n = stats.required_per_arm(base, lift)
    runs = 400
    a = rng.binomial(n, base, size=runs)
    b = rng.binomial(n, base * (1 + lift), size=runs)
    detected = np.mean(
        [
            stats.analyse([variant("control", n, int(x), 0, True), variant("b", n, int(y))])[
                "comparisons"
            ][0].significant
            for x, y in zip(a, b, strict=True)
        ]
    )
    assert 0.72 < detected < 0.88  # designed for 80% power


def test_split_check_flags_a_sample_ratio_mismatch():
    ok = stats.split_check([5020, 4980], [1, 1])
    assert not ok["mismatch"] and "matches" in ok["verdict"]
    bad = stats.split_check([5400, 4600], [1, 1])
    assert bad["mismatch"] and "off the configured weights" in bad["verdict"]
    expected_p = scipy_stats.chisquare([5400, 4600], [5000, 5000]).pvalue
    assert bad["p_value"] == pytest.approx(expected_p)
    weighted = stats.split_check([7480, 2520], [3, 1])
    assert not weighted["mismatch"]
    few = stats.split_check([3, 5], [1, 1])
    assert few["p_value"] is None and "Too few users" in few["verdict"]
