"""Synthetic "demo shop" generator.

Builds a small but realistic e-commerce data set (users, items, interactions, follower
relations) with known structure planted in it, so recipes and evaluations can be checked
against a ground truth:

* six user segments, each favouring two product categories (~70% of their interactions);
  demographics lean towards a segment but never decide it;
* long-tailed user activity and Zipf-like item popularity within each category;
* a view -> cart -> purchase funnel where every cart or purchase follows a view of the same
  item by the same user, grouped into sessions, with impressions on some views;
* a handful of trending items whose rate jumps in the last three days;
* bundle pairs: buying item A is often followed by buying item B in the same session;
* a follower graph whose communities are the segments.

Everything derives from ``numpy.random.default_rng(seed)`` and a fixed reference "now", so
one seed always gives byte-identical files. This module must stay free of Django.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

# --- time -------------------------------------------------------------------------------
DAY = 86_400
REFERENCE_NOW = int(datetime(2026, 6, 30, tzinfo=UTC).timestamp())
WINDOW_DAYS = 90
WINDOW_START = REFERENCE_NOW - WINDOW_DAYS * DAY
TREND_DAYS = 3
TREND_START = REFERENCE_NOW - TREND_DAYS * DAY
CATALOG_AGE_DAYS = 3 * 365
RELATIONS_AGE_DAYS = 365
# Relative activity per hour of day (UTC): quiet nights, busy evenings.
HOURLY_ACTIVITY = np.array(
    [0.30, 0.20, 0.15, 0.12, 0.12, 0.15, 0.25, 0.45, 0.60, 0.70, 0.75, 0.80]
    + [0.90, 0.85, 0.80, 0.80, 0.85, 0.95, 1.10, 1.35, 1.50, 1.45, 1.10, 0.60]
)
WEEKEND_BOOST = 1.35
# Headroom after a session's last event, so bundle follow-ups still end before "now".
SESSION_TAIL_SECONDS = 600

# --- catalogue ----------------------------------------------------------------------------
CATEGORIES = (
    "Shoes",
    "Running",
    "Outdoor",
    "Electronics",
    "Audio",
    "Books",
    "Kitchen",
    "Home",
    "Beauty",
    "Toys",
    "Sports",
    "Fashion",
)
# Categories that plausibly share an item, used for the multi-valued ones ("Shoes|Running").
PARTNER_CATEGORIES = {
    "Shoes": ("Running", "Fashion"),
    "Running": ("Shoes", "Sports"),
    "Outdoor": ("Sports", "Shoes"),
    "Electronics": ("Audio",),
    "Audio": ("Electronics",),
    "Books": ("Toys", "Kitchen"),
    "Kitchen": ("Home",),
    "Home": ("Kitchen",),
    "Beauty": ("Fashion",),
    "Toys": ("Books",),
    "Sports": ("Running", "Outdoor"),
    "Fashion": ("Shoes", "Beauty"),
}
# Median price per category; prices are lognormal around it.
PRICE_LEVEL = {
    "Shoes": 90.0,
    "Running": 70.0,
    "Outdoor": 120.0,
    "Electronics": 250.0,
    "Audio": 150.0,
    "Books": 18.0,
    "Kitchen": 45.0,
    "Home": 60.0,
    "Beauty": 25.0,
    "Toys": 30.0,
    "Sports": 55.0,
    "Fashion": 50.0,
}
PRICE_SPREAD = 0.45
MULTI_CATEGORY_SHARE = 0.15
IN_STOCK_SHARE = 0.90
NEW_ITEM_SHARE = 0.12
ZIPF_EXPONENT = 1.15
# Per category: product nouns, adjectives, selling points. Titles and descriptions draw on
# these so that text similarity recovers the category.
VOCABULARY = {
    "Shoes": (
        ("shoe", "sneaker", "boot", "loafer", "sandal"),
        ("leather", "suede", "cushioned", "lightweight", "classic"),
        ("a padded insole", "a grippy outsole", "reinforced stitching", "a breathable lining"),
    ),
    "Running": (
        ("running shoe", "running vest", "running tights", "hydration belt", "running cap"),
        ("trail", "marathon", "tempo", "reflective", "sprint"),
        ("sweat-wicking fabric", "a carbon plate", "a race-day fit", "pacing pockets"),
    ),
    "Outdoor": (
        ("tent", "backpack", "sleeping bag", "headlamp", "trekking pole"),
        ("alpine", "waterproof", "ultralight", "expedition", "camping"),
        ("a storm-proof shell", "taped seams", "a compression sack", "a hiking harness"),
    ),
    "Electronics": (
        ("laptop", "tablet", "smartwatch", "monitor", "charger"),
        ("wireless", "portable", "smart", "4K", "fast-charging"),
        ("a USB-C port", "a long battery life", "a quad-core processor", "a retina display"),
    ),
    "Audio": (
        ("headphones", "earbuds", "speaker", "soundbar", "turntable"),
        ("noise-cancelling", "hi-fi", "bass-boosted", "studio", "stereo"),
        ("deep bass", "active noise cancellation", "a balanced equalizer", "lossless audio"),
    ),
    "Books": (
        ("novel", "cookbook", "biography", "thriller", "anthology"),
        ("bestselling", "illustrated", "hardcover", "paperback", "award-winning"),
        ("a gripping plot", "vivid characters", "a foreword by the author", "a reading guide"),
    ),
    "Kitchen": (
        ("chef knife", "frying pan", "blender", "espresso machine", "cutting board"),
        ("stainless", "nonstick", "cast-iron", "ceramic", "professional"),
        ("a dishwasher-safe finish", "an ergonomic handle", "even heat distribution"),
    ),
    "Home": (
        ("lamp", "rug", "cushion", "curtain", "bookshelf"),
        ("cozy", "scandinavian", "woven", "velvet", "minimalist"),
        ("a soft woven texture", "warm ambient lighting", "a sturdy oak frame", "easy assembly"),
    ),
    "Beauty": (
        ("moisturizer", "serum", "lipstick", "shampoo", "perfume"),
        ("hydrating", "organic", "vegan", "fragrance-free", "radiant"),
        ("hyaluronic acid", "vitamin C", "a silky texture", "dermatologist-tested skincare"),
    ),
    "Toys": (
        ("puzzle", "building blocks", "plush bear", "board game", "toy car"),
        ("educational", "colorful", "wooden", "interactive", "family"),
        ("hours of playtime", "safe rounded edges", "bright colors for kids", "a play guide"),
    ),
    "Sports": (
        ("yoga mat", "dumbbell", "tennis racket", "football", "resistance band"),
        ("pro", "training", "adjustable", "competition", "gym"),
        ("a non-slip grip", "a training plan", "durable rubber", "tournament-grade strings"),
    ),
    "Fashion": (
        ("jacket", "dress", "jeans", "scarf", "handbag"),
        ("denim", "linen", "tailored", "vintage", "silk"),
        ("a tailored fit", "premium cotton", "a seasonal print", "a runway-inspired cut"),
    ),
}
MODEL_NAMES = (
    "Apex",
    "Nova",
    "Orbit",
    "Pulse",
    "Vertex",
    "Zephyr",
    "Aura",
    "Summit",
    "Echo",
    "Flux",
    "Terra",
    "Lumen",
)

# --- users and segments -------------------------------------------------------------------
# (name, favoured categories, demographic lean). Gender is deliberately left unskewed.
SEGMENTS = (
    (
        "athletes",
        ("Running", "Sports"),
        {"AGE_GROUP": "25-34", "COUNTRY": "US", "MEMBERSHIP": "plus"},
    ),
    (
        "adventurers",
        ("Outdoor", "Shoes"),
        {"AGE_GROUP": "35-44", "COUNTRY": "SE", "MEMBERSHIP": "free"},
    ),
    (
        "techies",
        ("Electronics", "Audio"),
        {"AGE_GROUP": "18-24", "COUNTRY": "DE", "MEMBERSHIP": "premium"},
    ),
    ("families", ("Toys", "Books"), {"AGE_GROUP": "35-44", "COUNTRY": "GB", "MEMBERSHIP": "plus"}),
    (
        "home_cooks",
        ("Kitchen", "Home"),
        {"AGE_GROUP": "45-54", "COUNTRY": "FR", "MEMBERSHIP": "free"},
    ),
    (
        "trendsetters",
        ("Fashion", "Beauty"),
        {"AGE_GROUP": "18-24", "COUNTRY": "IT", "MEMBERSHIP": "premium"},
    ),
)
SEGMENT_SHARES = np.array([0.19, 0.18, 0.17, 0.16, 0.15, 0.15])
DEMOGRAPHICS = {
    "AGE_GROUP": (("18-24", "25-34", "35-44", "45-54", "55+"), (0.18, 0.30, 0.24, 0.16, 0.12)),
    "GENDER": (("F", "M", "X"), (0.48, 0.48, 0.04)),
    "COUNTRY": (
        ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "CA"),
        (0.25, 0.14, 0.13, 0.11, 0.08, 0.08, 0.06, 0.05, 0.05, 0.05),
    ),
    "MEMBERSHIP": (("free", "plus", "premium"), (0.60, 0.28, 0.12)),
}
# Weight of the segment's favourite value in each demographic mix; the rest is the base mix.
DEMOGRAPHIC_LEAN = {"AGE_GROUP": 0.40, "COUNTRY": 0.30, "MEMBERSHIP": 0.35}
ACTIVITY_SIGMA = 1.1
MIN_EVENTS_PER_USER = 3
# Share of a segment's interactions going to its first and second favoured category; the
# remainder is spread evenly over all categories.
FAVOURED_SHARES = (0.40, 0.30)

# --- funnel and sessions --------------------------------------------------------------------
# Each "chain" is view, view+cart or view+cart+purchase of one item. With 66% / 8% / 6% of
# rows as chain starts the rows come out 80% view, 14% cart, 6% purchase.
CART_ONLY_SHARE = 0.08
PURCHASE_SHARE = 0.06
NEW_SESSION_PROBABILITY = 0.3
IMPRESSION_SHARE = 0.30
IMPRESSION_SIZES = (5, 10)

# --- planted signals ------------------------------------------------------------------------
N_TRENDING = 8
TREND_BOOST = 15.0
MIN_TREND_CHAINS = 30
N_BUNDLES = 10
BUNDLE_FOLLOW_RATE = 0.6
ISOLATED_USER_SHARE = 0.10
WITHIN_SEGMENT_EDGE_SHARE = 0.85
MIN_USERS = 60
MIN_ITEMS = 120

USER_COLUMNS = ["USER_ID", "AGE_GROUP", "GENDER", "COUNTRY", "MEMBERSHIP"]
ITEM_COLUMNS = [
    "ITEM_ID",
    "TITLE",
    "DESCRIPTION",
    "CATEGORY",
    "PRICE",
    "IN_STOCK",
    "CREATION_TIMESTAMP",
]
INTERACTION_COLUMNS = [
    "USER_ID",
    "ITEM_ID",
    "TIMESTAMP",
    "EVENT_TYPE",
    "EVENT_VALUE",
    "SESSION_ID",
    "IMPRESSION",
]
RELATION_COLUMNS = ["FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP"]
EVENT_TYPES = np.array(["view", "cart", "purchase"], dtype=object)


@dataclass(frozen=True)
class DemoShop:
    """The generated tables, exactly as they are written to CSV, plus the ground truth."""

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    relations: pd.DataFrame
    ground_truth: dict

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "users": self.users,
            "items": self.items,
            "interactions": self.interactions,
            "relations": self.relations,
        }


@dataclass(frozen=True)
class _Catalog:
    category: np.ndarray  # primary category index
    secondary: np.ndarray  # secondary category index, -1 if none
    rank: np.ndarray  # popularity rank within the category, 0 = most popular
    weight: np.ndarray  # Zipf popularity weight
    created: np.ndarray  # epoch seconds
    price: np.ndarray

    @property
    def is_old(self) -> np.ndarray:
        return self.created < WINDOW_START


@dataclass
class _Chains:
    """One row per view(-cart(-purchase)) chain; the events are expanded at the end."""

    user: np.ndarray
    kind: np.ndarray  # 0 view, 1 view+cart, 2 view+cart+purchase
    session: np.ndarray | None = None
    view_time: np.ndarray | None = None
    cart_delay: np.ndarray | None = None
    purchase_delay: np.ndarray | None = None
    item: np.ndarray | None = None

    @property
    def purchase_time(self) -> np.ndarray:
        return self.view_time + self.cart_delay + self.purchase_delay


class _GroupSampler:
    """Draws members of groups (categories, segments) in proportion to their weights."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        self._members = []
        self._cumulative = []
        for g in range(n_groups):
            members = np.flatnonzero((group == g) & (weight > 0))
            self._members.append(members)
            self._cumulative.append(np.cumsum(weight[members]))

    def has_members(self, g: int) -> bool:
        return len(self._members[g]) > 0

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        u = rng.random(len(groups))
        drawn = np.empty(len(groups), dtype=np.int64)
        for g, (members, cumulative) in enumerate(
            zip(self._members, self._cumulative, strict=True)
        ):
            rows = np.flatnonzero(groups == g)
            if len(rows) == 0:
                continue
            position = np.searchsorted(cumulative, u[rows] * cumulative[-1], side="right")
            drawn[rows] = members[np.minimum(position, len(members) - 1)]
        return drawn


class _ActivityClock:
    """Samples timestamps in the window following the daily and weekly rhythm."""

    def __init__(self, start: int, end: int):
        hour_starts = np.arange(start, end, 3600)
        hour_of_day = (hour_starts // 3600) % 24
        weekday = (hour_starts // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        weight = HOURLY_ACTIVITY[hour_of_day] * np.where(weekday >= 5, WEEKEND_BOOST, 1.0)
        self._edges = np.append(hour_starts, end).astype(float)
        cdf = np.concatenate([[0.0], np.cumsum(weight * np.diff(self._edges))])
        self._cdf = cdf / cdf[-1]

    def sample(self, rng: np.random.Generator, latest: np.ndarray) -> np.ndarray:
        """One timestamp per entry of ``latest``, each no later than it."""
        ceiling = np.interp(latest, self._edges, self._cdf)
        u = rng.random(len(latest)) * ceiling
        return np.floor(np.interp(u, self._cdf, self._edges)).astype(np.int64)


# --- public API -------------------------------------------------------------------------------


def build_demo_shop(
    *,
    n_users: int = 6000,
    n_items: int = 2465,
    n_interactions: int = 675_000,
    seed: int = 42,
) -> DemoShop:
    """Generate the demo shop in memory."""
    _validate(n_users, n_items, n_interactions, seed)
    rng = np.random.default_rng(seed)
    user_ids = _make_ids("u", n_users)
    item_ids = _make_ids("i", n_items)

    segment = rng.choice(len(SEGMENTS), size=n_users, p=SEGMENT_SHARES / SEGMENT_SHARES.sum())
    users = _users_frame(rng, user_ids, segment)
    catalog = _build_catalog(rng, n_items)
    items = _items_frame(rng, item_ids, catalog)
    bundles = _pick_bundles(rng, catalog)
    trending = _pick_trending(rng, catalog, taken=bundles.ravel())

    chains = _plan_chains(rng, segment, n_interactions)
    _schedule_sessions(rng, chains)
    _choose_items(rng, chains, segment, catalog)
    _plant_trend(rng, chains, trending, taken=bundles.ravel())
    _plant_bundles(rng, chains, bundles, taken=np.concatenate([bundles.ravel(), trending]))
    interactions = _interactions_frame(rng, chains, catalog, user_ids, item_ids)
    relations, has_edges = _relations_frame(rng, segment, user_ids)

    params = {
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": n_interactions,
        "seed": seed,
        "window_days": WINDOW_DAYS,
        "trend_days": TREND_DAYS,
        "favoured_shares": list(FAVOURED_SHARES),
        "bundle_follow_rate": BUNDLE_FOLLOW_RATE,
        "within_segment_edge_share": WITHIN_SEGMENT_EDGE_SHARE,
        "isolated_user_share": ISOLATED_USER_SHARE,
    }
    ground_truth = _ground_truth(user_ids, item_ids, segment, trending, bundles, has_edges, params)
    return DemoShop(users, items, interactions, relations, ground_truth)


def generate_demo_shop(
    out_dir: str | Path,
    *,
    n_users: int = 6000,
    n_items: int = 2465,
    n_interactions: int = 675_000,
    seed: int = 42,
) -> dict:
    """Generate the demo shop and write its CSV files and ground_truth.json to ``out_dir``.

    Returns a summary: ``out_dir``, ``seed``, ``counts`` (rows per table) and ``files``
    (table name -> path written).
    """
    shop = build_demo_shop(
        n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, counts = {}, {}
    for name, frame in shop.tables().items():
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False, lineterminator="\n", float_format="%.2f")
        files[name] = str(path)
        counts[name] = len(frame)
    truth_path = out / "ground_truth.json"
    truth_path.write_text(json.dumps(shop.ground_truth, indent=2, sort_keys=True) + "\n")
    files["ground_truth"] = str(truth_path)
    return {"out_dir": str(out), "seed": seed, "counts": counts, "files": files}


# --- users and catalogue ------------------------------------------------------------------------


def _validate(n_users: int, n_items: int, n_interactions: int, seed: int) -> None:
    for name, value in (("n_users", n_users), ("n_items", n_items)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n_users < MIN_USERS:
        raise ValueError(f"n_users must be at least {MIN_USERS}, got {n_users}")
    if n_items < MIN_ITEMS:
        raise ValueError(f"n_items must be at least {MIN_ITEMS}, got {n_items}")
    if not isinstance(n_interactions, int | np.integer) or n_interactions < 1:
        raise ValueError(f"n_interactions must be a positive integer, got {n_interactions!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _make_ids(prefix: str, n: int, width: int = 5) -> np.ndarray:
    width = max(width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _draw_categorical(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows x options) probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities)) * cumulative[:, -1]
    chosen = (u[:, None] >= cumulative).sum(axis=1)
    return np.minimum(chosen, probabilities.shape[1] - 1)


def _users_frame(rng: np.random.Generator, user_ids: np.ndarray, segment: np.ndarray):
    columns = {"USER_ID": user_ids}
    for column, (values, base) in DEMOGRAPHICS.items():
        lean = DEMOGRAPHIC_LEAN.get(column, 0.0)
        per_segment = np.tile(np.array(base) * (1 - lean), (len(SEGMENTS), 1))
        for s, (_, _, favourites) in enumerate(SEGMENTS):
            if column in favourites:
                per_segment[s, values.index(favourites[column])] += lean
        chosen = _draw_categorical(rng, per_segment[segment])
        columns[column] = np.array(values, dtype=object)[chosen]
    return pd.DataFrame(columns, columns=USER_COLUMNS)


def _build_catalog(rng: np.random.Generator, n_items: int) -> _Catalog:
    n_categories = len(CATEGORIES)
    category = rng.permutation(np.arange(n_items) % n_categories)
    # Random popularity rank within each category.
    order = np.lexsort((rng.random(n_items), category))
    group_start = np.searchsorted(category[order], np.arange(n_categories))
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = np.arange(n_items) - group_start[category[order]]
    weight = (rank + 1.0) ** -ZIPF_EXPONENT

    secondary = np.full(n_items, -1)
    multi = rng.random(n_items) < MULTI_CATEGORY_SHARE
    pick = rng.random(n_items)
    for i in np.flatnonzero(multi):
        partners = PARTNER_CATEGORIES[CATEGORIES[category[i]]]
        secondary[i] = CATEGORIES.index(partners[int(pick[i] * len(partners))])

    # The most popular item of each category is always old, so every category can serve
    # any moment of the window.
    is_new = (rng.random(n_items) < NEW_ITEM_SHARE) & (rank > 0)
    old_created = rng.integers(REFERENCE_NOW - CATALOG_AGE_DAYS * DAY, WINDOW_START - DAY, n_items)
    new_created = rng.integers(WINDOW_START, REFERENCE_NOW - DAY, n_items)
    created = np.where(is_new, new_created, old_created)

    level = np.array([PRICE_LEVEL[c] for c in CATEGORIES])[category]
    price = np.round(np.maximum(level * rng.lognormal(0.0, PRICE_SPREAD, n_items), 0.99), 2)
    return _Catalog(category, secondary, rank, weight, created, price)


def _items_frame(rng: np.random.Generator, item_ids: np.ndarray, catalog: _Catalog):
    n = len(item_ids)
    picks = rng.integers(0, 1 << 30, size=(n, 6))
    titles, descriptions, categories = [], [], []
    for i in range(n):
        name = CATEGORIES[catalog.category[i]]
        nouns, adjectives, features = VOCABULARY[name]
        noun = nouns[picks[i, 0] % len(nouns)]
        adjective = adjectives[picks[i, 1] % len(adjectives)]
        first = picks[i, 2] % len(features)
        second = (first + 1 + picks[i, 3] % (len(features) - 1)) % len(features)
        model = MODEL_NAMES[picks[i, 4] % len(MODEL_NAMES)]
        titles.append(f"{adjective.capitalize()} {noun} {model} {picks[i, 5] % 99 + 1}")
        text = (
            f"A {adjective} {noun} with {features[first]} and {features[second]}, "
            f"made for {name.lower()} lovers."
        )
        if catalog.secondary[i] >= 0:
            other = CATEGORIES[catalog.secondary[i]]
            other_nouns = VOCABULARY[other][0]
            text += f" Pairs well with any {other_nouns[picks[i, 0] % len(other_nouns)]}."
            name = f"{name}|{other}"
        descriptions.append(text)
        categories.append(name)
    in_stock = np.where(rng.random(n) < IN_STOCK_SHARE, "true", "false").astype(object)
    columns = {
        "ITEM_ID": item_ids,
        "TITLE": titles,
        "DESCRIPTION": descriptions,
        "CATEGORY": categories,
        "PRICE": catalog.price,
        "IN_STOCK": in_stock,
        "CREATION_TIMESTAMP": catalog.created,
    }
    return pd.DataFrame(columns, columns=ITEM_COLUMNS)


def _pick_bundles(rng: np.random.Generator, catalog: _Catalog) -> np.ndarray:
    """(N_BUNDLES x 2) item indices: a popular old item A and a partner-category item B."""
    category_size = np.bincount(catalog.category, minlength=len(CATEGORIES))
    top_band = np.maximum(2, category_size[catalog.category] // 10)
    anchors = np.flatnonzero(catalog.is_old & (catalog.rank < top_band))
    anchors = rng.permutation(anchors)
    mid_band = np.maximum(3, category_size[catalog.category] // 3)
    pairs, used = [], set()
    for a in anchors:
        if len(pairs) == N_BUNDLES:
            break
        if a in used:
            continue
        partners = PARTNER_CATEGORIES[CATEGORIES[catalog.category[a]]]
        partner = CATEGORIES.index(partners[rng.integers(len(partners))])
        candidates = np.flatnonzero(
            catalog.is_old & (catalog.category == partner) & (catalog.rank < mid_band)
        )
        candidates = np.array([c for c in candidates if c not in used and c != a], dtype=int)
        if len(candidates) == 0:
            continue
        b = int(rng.choice(candidates))
        pairs.append((int(a), b))
        used.update((int(a), b))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _pick_trending(rng: np.random.Generator, catalog: _Catalog, taken: np.ndarray) -> np.ndarray:
    """Old items of middling popularity, one per category, so their jump stands out."""
    category_size = np.bincount(catalog.category, minlength=len(CATEGORIES))
    size = category_size[catalog.category]
    middling = (catalog.rank >= size // 5) & (catalog.rank < size // 2)
    eligible = catalog.is_old & middling & ~np.isin(np.arange(len(catalog.rank)), taken)
    chosen = []
    for c in rng.permutation(len(CATEGORIES))[:N_TRENDING]:
        candidates = np.flatnonzero(eligible & (catalog.category == c))
        if len(candidates):
            chosen.append(int(rng.choice(candidates)))
    return np.array(sorted(chosen), dtype=np.int64)


# --- interactions -------------------------------------------------------------------------------


def _plan_chains(rng: np.random.Generator, segment: np.ndarray, n_interactions: int) -> _Chains:
    """Decide how many chains of each kind every user gets, hitting n_interactions exactly."""
    n_users = len(segment)
    n_purchase = round(PURCHASE_SHARE * n_interactions)
    n_cart = round(CART_ONLY_SHARE * n_interactions)
    if 2 * n_cart + 3 * n_purchase > n_interactions:
        n_cart, n_purchase = 0, 0
    n_view = n_interactions - 2 * n_cart - 3 * n_purchase
    # Guaranteed views per user first, then the rest by long-tailed activity.
    floor = min(MIN_EVENTS_PER_USER, n_view // n_users)
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    activity /= activity.sum()
    per_kind = [
        np.full(n_users, floor) + rng.multinomial(n_view - floor * n_users, activity),
        rng.multinomial(n_cart, activity),
        rng.multinomial(n_purchase, activity),
    ]
    users = np.arange(n_users)
    user = np.concatenate([np.repeat(users, counts) for counts in per_kind])
    kind = np.concatenate([np.full(counts.sum(), k) for k, counts in enumerate(per_kind)])
    order = np.lexsort((rng.random(len(user)), user))  # shuffle within each user
    return _Chains(user=user[order], kind=kind[order])


def _schedule_sessions(rng: np.random.Generator, chains: _Chains) -> None:
    """Group each user's chains into sessions and give every chain its timing."""
    n = len(chains.user)
    first_of_user = np.ones(n, dtype=bool)
    first_of_user[1:] = chains.user[1:] != chains.user[:-1]
    starts_session = first_of_user | (rng.random(n) < NEW_SESSION_PROBABILITY)
    session = np.cumsum(starts_session) - 1
    session_first = np.flatnonzero(starts_session)

    gap = np.where(starts_session, 0, 20 + rng.exponential(90.0, n).astype(np.int64))
    elapsed = np.cumsum(gap)
    offset = elapsed - elapsed[session_first][session]
    cart_delay = 10 + rng.exponential(60.0, n).astype(np.int64)
    purchase_delay = 30 + rng.exponential(120.0, n).astype(np.int64)
    end = offset + (chains.kind >= 1) * cart_delay + (chains.kind >= 2) * purchase_delay

    duration = np.maximum.reduceat(end, session_first) + SESSION_TAIL_SECONDS
    clock = _ActivityClock(WINDOW_START, REFERENCE_NOW)
    session_start = clock.sample(rng, latest=REFERENCE_NOW - 1 - duration)
    chains.session = session
    chains.view_time = session_start[session] + offset
    chains.cart_delay = cart_delay
    chains.purchase_delay = purchase_delay


def _segment_category_shares() -> np.ndarray:
    n_categories = len(CATEGORIES)
    spread = 1.0 - sum(FAVOURED_SHARES)
    shares = np.full((len(SEGMENTS), n_categories), spread / n_categories)
    for s, (_, favourites, _) in enumerate(SEGMENTS):
        for category, share in zip(favourites, FAVOURED_SHARES, strict=True):
            shares[s, CATEGORIES.index(category)] += share
    return shares


def _choose_items(
    rng: np.random.Generator, chains: _Chains, segment: np.ndarray, catalog: _Catalog
) -> None:
    """Pick a category from the user's segment taste, then an item by popularity."""
    n_categories = len(CATEGORIES)
    category = _draw_categorical(rng, _segment_category_shares()[segment[chains.user]])
    item = _GroupSampler(catalog.category, catalog.weight, n_categories).sample(rng, category)
    # An item cannot be seen before it exists: redraw among items older than the window.
    unborn = np.flatnonzero(catalog.created[item] > chains.view_time)
    old_only = _GroupSampler(catalog.category, catalog.weight * catalog.is_old, n_categories)
    item[unborn] = old_only.sample(rng, category[unborn])
    chains.item = item


def _plant_trend(
    rng: np.random.Generator, chains: _Chains, trending: np.ndarray, taken: np.ndarray
) -> None:
    """Move chains in the last TREND_DAYS onto the trending items, far above their baseline."""
    in_trend = chains.view_time >= TREND_START
    before = np.bincount(
        chains.item[~in_trend],
        weights=chains.kind[~in_trend] + 1.0,
        minlength=trending.max(initial=0) + 1,
    )
    baseline_per_day = before[trending] / (WINDOW_DAYS - TREND_DAYS)
    wanted = np.maximum(MIN_TREND_CHAINS, np.ceil(TREND_BOOST * TREND_DAYS * baseline_per_day))
    pool = np.flatnonzero(in_trend & ~np.isin(chains.item, np.concatenate([taken, trending])))
    if wanted.sum() > len(pool):
        wanted = np.floor(wanted * len(pool) / wanted.sum())
    chosen = rng.permutation(pool)[: int(wanted.sum())]
    chains.item[chosen] = np.repeat(trending, wanted.astype(np.int64))


def _plant_bundles(
    rng: np.random.Generator, chains: _Chains, bundles: np.ndarray, taken: np.ndarray
) -> None:
    """After many purchases of a bundle's item A, buy item B in the same session.

    The B chain is an existing purchase chain of some other item that is moved over, so
    the row count and funnel shares stay exact.
    """
    if len(bundles) == 0:
        return
    partner_of = dict(zip(bundles[:, 0].tolist(), bundles[:, 1].tolist(), strict=True))
    is_purchase = chains.kind == 2
    # An exact share of each A item's purchases is followed, so the signal never hinges on luck.
    anchors = []
    for a in bundles[:, 0]:
        bought = rng.permutation(np.flatnonzero(is_purchase & (chains.item == a)))
        anchors.append(bought[: round(BUNDLE_FOLLOW_RATE * len(bought))])
    anchors = np.sort(np.concatenate(anchors))
    donors = np.flatnonzero(is_purchase & ~np.isin(chains.item, taken))
    donors = rng.permutation(donors)[: len(anchors)]
    anchors = anchors[: len(donors)]

    chains.user[donors] = chains.user[anchors]
    chains.session[donors] = chains.session[anchors]
    chains.item[donors] = [partner_of[a] for a in chains.item[anchors].tolist()]
    # Bounded delays keep the whole follow-up inside SESSION_TAIL_SECONDS.
    chains.view_time[donors] = chains.purchase_time[anchors] + rng.integers(15, 180, len(donors))
    chains.cart_delay[donors] = rng.integers(10, 120, len(donors))
    chains.purchase_delay[donors] = rng.integers(30, 240, len(donors))


def _interactions_frame(
    rng: np.random.Generator,
    chains: _Chains,
    catalog: _Catalog,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> pd.DataFrame:
    """Expand chains into events, sorted by time."""
    rows_per_chain = chains.kind + 1
    chain = np.repeat(np.arange(len(chains.kind)), rows_per_chain)
    step = np.arange(len(chain)) - np.repeat(
        np.cumsum(rows_per_chain) - rows_per_chain, rows_per_chain
    )
    timestamp = (
        chains.view_time[chain]
        + (step >= 1) * chains.cart_delay[chain]
        + (step >= 2) * chains.purchase_delay[chain]
    )
    order = np.lexsort((step, chain, timestamp))
    chain, step, timestamp = chain[order], step[order], timestamp[order]
    item = chains.item[chain]

    event_value = np.where(step == 2, catalog.price[item], np.nan)
    session_number, _ = pd.factorize(chains.session[chain])  # numbered by first appearance
    session_ids = _make_ids("s", session_number.max(initial=-1) + 1, width=7)
    impression = _impressions(rng, item, step == 0, catalog, item_ids)
    columns = {
        "USER_ID": user_ids[chains.user[chain]],
        "ITEM_ID": item_ids[item],
        "TIMESTAMP": timestamp,
        "EVENT_TYPE": EVENT_TYPES[step],
        "EVENT_VALUE": event_value,
        "SESSION_ID": session_ids[session_number],
        "IMPRESSION": impression,
    }
    return pd.DataFrame(columns, columns=INTERACTION_COLUMNS)


def _impressions(
    rng: np.random.Generator,
    item: np.ndarray,
    is_view: np.ndarray,
    catalog: _Catalog,
    item_ids: np.ndarray,
) -> np.ndarray:
    """Lists of shown items on some views: the clicked item among same-category peers."""
    n_candidates = IMPRESSION_SIZES[1]
    rows = np.flatnonzero(is_view & (rng.random(len(item)) < IMPRESSION_SHARE))
    clicked = item[rows]
    sizes = rng.integers(IMPRESSION_SIZES[0], IMPRESSION_SIZES[1] + 1, len(rows))
    slot = rng.integers(0, sizes)
    # Only old items can be shown at any moment of the window.
    old_only = _GroupSampler(catalog.category, catalog.weight * catalog.is_old, len(CATEGORIES))
    peers = old_only.sample(rng, np.repeat(catalog.category[clicked], n_candidates))
    peers = peers.reshape(-1, n_candidates)
    fillers = rng.choice(np.flatnonzero(catalog.is_old), size=(len(rows), n_candidates))
    candidates = np.concatenate([peers, fillers], axis=1).tolist()

    impression = np.full(len(item), "", dtype=object)
    for r, row, shown_item, size, position in zip(
        range(len(rows)),
        rows.tolist(),
        clicked.tolist(),
        sizes.tolist(),
        slot.tolist(),
        strict=True,
    ):
        others = [c for c in dict.fromkeys(candidates[r]) if c != shown_item][: size - 1]
        others.insert(position, shown_item)
        impression[row] = "|".join(item_ids[others])
    return impression


# --- relations and ground truth -----------------------------------------------------------------


def _relations_frame(rng: np.random.Generator, segment: np.ndarray, user_ids: np.ndarray):
    """Follower -> followee edges, mostly within a segment; returns (frame, has_edges mask)."""
    n_users = len(segment)
    n_isolated = round(ISOLATED_USER_SHARE * n_users)
    active = np.ones(n_users, dtype=bool)
    active[rng.permutation(n_users)[:n_isolated]] = False
    # Long-tailed out-degree and attractiveness (in-degree).
    out_degree = np.where(active, 1 + rng.lognormal(1.2, 0.9, n_users).astype(np.int64), 0)
    out_degree = np.minimum(out_degree, active.sum() - 1)
    attractiveness = rng.lognormal(0.0, 1.0, n_users) * active

    follower = np.repeat(np.arange(n_users), out_degree)
    followee = _draw_followees(rng, follower, segment, attractiveness)
    for _ in range(10):  # redraw self-loops
        loops = np.flatnonzero(follower == followee)
        if len(loops) == 0:
            break
        followee[loops] = _draw_followees(rng, follower[loops], segment, attractiveness)
    keep = follower != followee
    edge_key = np.unique(follower[keep] * n_users + followee[keep])
    follower, followee = edge_key // n_users, edge_key % n_users
    timestamp = rng.integers(REFERENCE_NOW - RELATIONS_AGE_DAYS * DAY, REFERENCE_NOW, len(edge_key))
    order = np.lexsort((followee, follower, timestamp))
    frame = pd.DataFrame(
        {
            "FOLLOWER_ID": user_ids[follower[order]],
            "FOLLOWEE_ID": user_ids[followee[order]],
            "TIMESTAMP": timestamp[order],
        },
        columns=RELATION_COLUMNS,
    )
    has_edges = np.zeros(n_users, dtype=bool)
    has_edges[follower] = True
    has_edges[followee] = True
    return frame, has_edges


def _draw_followees(
    rng: np.random.Generator,
    follower: np.ndarray,
    segment: np.ndarray,
    attractiveness: np.ndarray,
) -> np.ndarray:
    n_segments = len(SEGMENTS)
    within = _GroupSampler(segment, attractiveness, n_segments)
    anyone = _GroupSampler(np.zeros(len(segment), dtype=np.int64), attractiveness, 1)
    group = segment[follower]
    stay = rng.random(len(follower)) < WITHIN_SEGMENT_EDGE_SHARE
    stay &= np.array([within.has_members(g) for g in range(n_segments)])[group]
    followee = anyone.sample(rng, np.zeros(len(follower), dtype=np.int64))
    followee[stay] = within.sample(rng, group[stay])
    return followee


def _ground_truth(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    segment: np.ndarray,
    trending: np.ndarray,
    bundles: np.ndarray,
    has_edges: np.ndarray,
    params: dict,
) -> dict:
    segments, communities = [], {}
    for s, (name, favourites, _) in enumerate(SEGMENTS):
        members = segment == s
        segments.append(
            {"name": name, "categories": list(favourites), "users": user_ids[members].tolist()}
        )
        # Communities are the segments as seen in the follower graph: users with edges.
        communities[name] = user_ids[members & has_edges].tolist()
    names = np.array([name for name, _, _ in SEGMENTS], dtype=object)
    return {
        "segments": segments,
        "user_segment": dict(zip(user_ids.tolist(), names[segment].tolist(), strict=True)),
        "trending_items": item_ids[trending].tolist(),
        "trend_start": TREND_START,
        "bundles": [[item_ids[a], item_ids[b]] for a, b in bundles.tolist()],
        "communities": communities,
        "reference_now": REFERENCE_NOW,
        "params": params,
    }
