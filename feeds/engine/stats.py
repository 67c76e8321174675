"""Statistics of an experiment's results (Django-free): rates with 95% intervals, each variant
against the control, a verdict in plain words and a traffic-split check.

The unit is the impression (one item shown in one response): a rate is successes (clicks or
conversions on shown items) over impressions. Intervals are Wilson score intervals; a
variant is compared with the control by a two-sided two-proportion z-test with the pooled
standard error. With more than one variant the significance threshold is Bonferroni-corrected
(0.05 divided by the number of comparisons) so that an A/B/C/D test is not "significant" by
chance three times as often as an A/B test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats as _scipy

ALPHA = 0.05
POWER = 0.8
Z95 = 1.959963984540054
# A comparison is only judged with at least this many impressions in each arm and at least
# MIN_SUCCESSES successes (and failures) in each: below that the normal approximation of the
# z-test is poor and a single click swings the rate.
MIN_IMPRESSIONS = 100
MIN_SUCCESSES = 5
# The lift a power estimate is computed for ("about N more impressions to detect a 10% lift").
DETECTABLE_LIFT = 0.10
# The traffic-split check flags a sample ratio mismatch below this p-value.
SRM_ALPHA = 0.001


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there is no trial."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= trials else min(1.0, centre + half)
    return low, high


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Two-sided z-test of p2 == p1 (pooled standard error): returns (z, p-value).

    ``z`` is positive when the second proportion is the larger. (0, 1) when undefined.
    """
    if n1 <= 0 or n2 <= 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def required_per_arm(
    base_rate: float, lift: float = DETECTABLE_LIFT, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Impressions per arm to detect a relative ``lift`` over ``base_rate`` (two-sided test).

    The classic normal-approximation formula for two proportions; None when the base rate is
    0 or so high the lifted rate passes 1 (nothing to estimate from).
    """
    p1 = base_rate
    p2 = base_rate * (1 + lift)
    if not 0 < p1 < 1 or not 0 < p2 < 1:
        return None
    z_alpha = _scipy.norm.isf(alpha / 2)
    z_beta = _scipy.norm.isf(1 - power)
    p_bar = (p1 + p2) / 2
    numerator = z_alpha * math.sqrt(2 * p_bar * (1 - p_bar)) + z_beta * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(numerator**2 / (p2 - p1) ** 2)


@dataclass
class Rate:
    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, successes: int, trials: int) -> Rate:
        if trials <= 0:
            return cls(successes, trials, None, None, None)
        low, high = wilson_interval(successes, trials)
        return cls(successes, trials, successes / trials, low, high)


@dataclass
class Comparison:
    """One variant against the control on one metric."""

    variant: str
    metric: str  # "CTR" or "conversion rate"
    enough_data: bool
    z: float | None = None
    p_value: float | None = None
    significant: bool = False
    relative_lift: float | None = None  # (variant - control) / control
    more_needed: int | None = None  # impressions per arm still needed for a 10% lift
    verdict: str = ""


@dataclass
class VariantStats:
    name: str
    is_control: bool
    impressions: int
    clicks: int
    conversions: int
    ctr: Rate = field(init=False)
    conversion: Rate = field(init=False)

    def __post_init__(self):
        self.ctr = Rate.of(self.clicks, self.impressions)
        self.conversion = Rate.of(self.conversions, self.impressions)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def compare(
    control: VariantStats,
    variant: VariantStats,
    metric: str,
    *,
    alpha: float = ALPHA,
    lift: float = DETECTABLE_LIFT,
) -> Comparison:
    """``variant`` against ``control`` on ``metric`` ("ctr" or "conversion")."""
    label = "CTR" if metric == "ctr" else "conversion rate"
    a = control.ctr if metric == "ctr" else control.conversion
    b = variant.ctr if metric == "ctr" else variant.conversion
    result = Comparison(variant=variant.name, metric=label, enough_data=False)
    short = []
    for name, rate in ((control.name, a), (variant.name, b)):
        if rate.trials < MIN_IMPRESSIONS:
            short.append(f"{name} has {rate.trials} impressions (at least {MIN_IMPRESSIONS})")
        elif min(rate.successes, rate.trials - rate.successes) < MIN_SUCCESSES:
            short.append(
                f"{name} has {rate.successes} {'clicks' if metric == 'ctr' else 'conversions'} "
                f"(at least {MIN_SUCCESSES})"
            )
    if short:
        result.verdict = f"Not enough data yet to compare {label}s: {'; '.join(short)}."
        return result
    result.enough_data = True
    z, p = two_proportion_z_test(a.successes, a.trials, b.successes, b.trials)
    result.z, result.p_value = z, p
    result.relative_lift = (b.rate - a.rate) / a.rate if a.rate else None
    result.significant = p < alpha
    rates = f"{_pct(b.rate)} vs {_pct(a.rate)}"
    if result.significant:
        word = "higher" if b.rate > a.rate else "lower"
        result.verdict = (
            f"{variant.name}'s {label} is {word} than {control.name}'s ({rates}), {_p(p)}."
        )
        return result
    needed = required_per_arm(a.rate, lift, alpha)
    more = None if needed is None else max(0, needed - min(a.trials, b.trials))
    result.more_needed = more
    text = f"No significant difference in {label} yet ({rates}, {_p(p)}"
    if alpha < ALPHA:
        text += f", threshold {alpha:.3g} for {round(ALPHA / alpha)} comparisons"
    text += ")"
    if more:
        text += (
            f"; about {more:,} more impressions per variant are needed to detect a "
            f"{round(100 * lift)}% lift."
        )
    elif more == 0:
        text += (
            f"; the sample is large enough to detect a {round(100 * lift)}% lift, so any "
            "difference is probably smaller than that."
        )
    else:
        text += "."
    result.verdict = text
    return result


def analyse(variants: list[VariantStats]) -> dict:
    """Every non-control variant against the control on CTR and conversion rate.

    Returns ``{"control": name, "alpha": threshold, "comparisons": [Comparison, ...]}``;
    ``comparisons`` is empty when there is no control.
    """
    controls = [v for v in variants if v.is_control]
    if not controls:
        return {"control": None, "alpha": ALPHA, "comparisons": []}
    control = controls[0]
    others = [v for v in variants if v is not control]
    alpha = ALPHA / max(1, len(others))
    comparisons = [
        compare(control, v, metric, alpha=alpha) for v in others for metric in ("ctr", "conversion")
    ]
    return {"control": control.name, "alpha": alpha, "comparisons": comparisons}


def split_check(observed: list[int], weights: list[float]) -> dict:
    """Observed users per variant against the configured weights (sample ratio mismatch).

    A chi-squared goodness-of-fit test; ``mismatch`` is True when p < SRM_ALPHA, which means
    the assignment or the logging is broken (a real split this far off is very unlikely).
    """
    total = sum(observed)
    weight_sum = float(sum(weights))
    expected_shares = [w / weight_sum for w in weights] if weight_sum else [0.0] * len(weights)
    observed_shares = [o / total if total else 0.0 for o in observed]
    result = {
        "total": total,
        "expected_shares": expected_shares,
        "observed_shares": observed_shares,
        "p_value": None,
        "mismatch": False,
        "verdict": "",
    }
    if len(observed) < 2 or total < 20 * len(observed):
        result["verdict"] = (
            f"Too few users so far ({total}) to check the split; it is checked from "
            f"{20 * len(observed)} users on."
        )
        return result
    expected = [total * s for s in expected_shares]
    p = float(_scipy.chisquare(observed, expected).pvalue)
    result["p_value"] = p
    result["mismatch"] = p < SRM_ALPHA
    if result["mismatch"]:
        result["verdict"] = (
            f"The observed split is off the configured weights ({_p(p)}): check that every "
            "request goes through the experiment and that responses are logged with their "
            "variant before trusting the results."
        )
    else:
        result["verdict"] = f"The observed split matches the configured weights ({_p(p)})."
    return result
