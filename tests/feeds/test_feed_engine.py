"""The feed engine (feeds/engine/feed.py): slot mixing, dedupe, fallback, promotions, pinning,
exclusions, reasons and signed pagination cursors.

Plain pytest, no database: the engine is Django-free.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.engine.cursor import MAX_CURSOR_LENGTH
from feeds.engine.feed import (
    MAX_PAGE_SIZE,
    Candidate,
    CursorSpecMismatch,
    FeedSpec,
    InvalidCursor,
    Promotion,
    RankedColumns,
    Slot,
    allowed_from_mask,
    build_page,
    iter_feed,
    ranked,
)

KEY = "test-secret"
P, T, C = "user-personalization", "trending-now", "popularity-count"


def source(prefix, n, reason=""):
    """n distinct candidates with descending scores: prefix0, prefix1, ..."""
    return [Candidate(f"{prefix}{i}", round(1.0 - i / 1000, 6), reason) for i in range(n)]


def spec_311(**kwargs):
    kwargs.setdefault("fallback", C)
    return FeedSpec(slots=[Slot(P, 3), Slot(T, 1), Slot(C, 1)], **kwargs)


def all_pages(spec, candidates, page_size, **kwargs):
    pages, cursor = [], None
    while True:
        page = build_page(spec, candidates, page_size, cursor, secret_key=KEY, **kwargs)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 10_000, "pagination does not terminate"


def codes(page):
    return [w.code for w in page.warnings]


# --------------------------------------------------------------------------------------------
# The slot pattern
# --------------------------------------------------------------------------------------------


def test_3_1_1_pattern_by_position_repeats_page_after_page():
    cands = {P: source("p", 50, "for you"), T: source("t", 50, "trending"), C: source("c", 50)}
    page1 = build_page(spec_311(), cands, 10, secret_key=KEY)
    page2 = build_page(spec_311(), cands, 10, page1.next_cursor, secret_key=KEY)
    items = page1.items + page2.items
    assert [i.source for i in items] == [P, P, P, T, C] * 4
    assert [i.slot_index for i in items] == [0, 0, 0, 1, 2] * 4
    assert [i.rank for i in items] == list(range(1, 21))
    # Each source is read best first.
    assert [i.item_id for i in items if i.source == P] == [f"p{k}" for k in range(12)]
    assert [i.item_id for i in items if i.source == T] == ["t0", "t1", "t2", "t3"]
    first = items[0]
    assert (first.score, first.reason, first.kind, first.fills_for) == (
        1.0,
        "for you",
        "slot",
        None,
    )
    # A candidate without a reason gets one naming its source.
    assert items[4].reason == f"from {C}"
    assert page2.start == 11


def test_dedupe_across_sources_keeps_the_first_position_and_moves_on():
    cands = {
        P: [Candidate(x, 1.0) for x in ["a", "b", "c", "d", "e", "f"]],
        T: [Candidate(x, 1.0) for x in ["a", "b", "x", "y"]],  # a, b already shown by P
        C: [Candidate(x, 1.0) for x in ["x", "c", "z", "w"]],  # x shown by T, c by P
    }
    items = list(iter_feed(spec_311(), cands))
    ids = [i.item_id for i in items]
    assert len(ids) == len(set(ids))
    assert ids[:5] == ["a", "b", "c", "x", "z"]
    assert set(ids) == {"a", "b", "c", "d", "e", "f", "x", "y", "z", "w"}


def test_duplicates_inside_one_source_are_shown_once():
    cands = {P: [Candidate(x) for x in ["a", "a", "b", "a", "c"]]}
    ids = [i.item_id for i in iter_feed(FeedSpec(slots=[Slot(P, 2)]), cands)]
    assert ids == ["a", "b", "c"]


def test_no_item_repeats_across_pages():
    cands = {
        P: source("i", 60),
        T: list(reversed(source("i", 60))),  # same items, opposite order
        C: source("i", 80)[::2],
    }
    pages = all_pages(spec_311(), cands, 7)
    ids = [i.item_id for page in pages for i in page.items]
    assert len(ids) == len(set(ids)) == 70  # i0..i59 and the even i60..i78
    assert [i.rank for page in pages for i in page.items] == list(range(1, 71))


# --------------------------------------------------------------------------------------------
# Fallback and exhaustion
# --------------------------------------------------------------------------------------------


def test_dry_source_is_filled_from_the_fallback_with_a_warning_once():
    cands = {P: source("p", 4), T: source("t", 20), C: source("c", 20)}
    pages = all_pages(spec_311(), cands, 10)
    items = [i for page in pages for i in page.items]
    # P has 4 items: positions 1-3 and 6, then position 7 falls back.
    pos7 = items[6]
    assert (pos7.rank, pos7.source, pos7.kind, pos7.fills_for, pos7.slot_index) == (
        7,
        C,
        "fallback",
        P,
        0,
    )
    dry = [w for page in pages for w in page.warnings if w.code == "source-dry"]
    assert dry[0].message == (f"source '{P}' ran dry at position 7; the fallback '{C}' filled it.")
    assert [w.source for w in dry].count(P) == 1
    # The pattern keeps its turns: trending still gets every 5th slot of the pattern.
    assert [i.source for i in items[:10]] == [P, P, P, T, C, P, C, C, T, C]


def test_when_fallback_is_dry_too_the_other_sources_fill_in_pattern_order():
    cands = {P: source("p", 3), T: source("t", 12), C: source("c", 1), "x": source("x", 2)}
    spec = FeedSpec(slots=[Slot(P, 3), Slot(T, 1), Slot(C, 1)], fallback="x")
    items = list(iter_feed(spec, cands))
    assert [i.item_id for i in items[:9]] == ["p0", "p1", "p2", "t0", "c0", "x0", "x1", "t1", "t2"]
    assert items[7].fills_for == P and items[7].kind == "fallback"
    # The feed ends only when everything is exhausted.
    assert len(items) == 3 + 12 + 1 + 2


def test_feed_ends_when_every_source_is_exhausted():
    cands = {P: source("p", 5), T: source("t", 2), C: source("c", 2)}
    page = build_page(spec_311(), cands, 20, secret_key=KEY)
    assert len(page.items) == 9
    assert page.next_cursor is None
    assert page.warnings[-1].code == "feed-end"
    assert "ends at position 9" in page.warnings[-1].message
    assert any("no other source had items left" in str(w) for w in page.warnings)


def test_a_full_last_page_has_no_next_cursor():
    cands = {P: source("p", 6), T: source("t", 2), C: source("c", 2)}
    page = build_page(spec_311(), cands, 10, secret_key=KEY)
    assert len(page.items) == 10 and page.next_cursor is None


def test_missing_source_uses_fallback_and_says_why():
    cands = {P: source("p", 10), C: source("c", 10)}  # trending-now's campaign was deleted
    page = build_page(spec_311(), cands, 10, secret_key=KEY)
    assert [i.source for i in page.items] == [P, P, P, C, C] * 2
    assert page.items[3].fills_for == T
    missing = [w for w in page.warnings if w.code == "source-missing"]
    assert len(missing) == 1 and missing[0].source == T
    assert "deleted" in missing[0].message and f"fallback '{C}'" in missing[0].message
    # A missing source is not also reported as "ran dry".
    assert not any(w.code == "source-dry" and w.source == T for w in page.warnings)


def test_missing_fallback_and_empty_candidates():
    spec = FeedSpec(slots=[Slot(P, 2), Slot(T, 1)], fallback=C)
    page = build_page(spec, {P: source("p", 2), T: source("t", 3)}, 10, secret_key=KEY)
    assert [i.item_id for i in page.items] == ["p0", "p1", "t0", "t1", "t2"]
    assert any(w.code == "source-missing" and "fallback" in w.message for w in page.warnings)
    empty = build_page(spec, {}, 10, secret_key=KEY)
    assert empty.items == [] and empty.next_cursor is None
    assert "the feed is empty" in empty.warnings[-1].message


# --------------------------------------------------------------------------------------------
# Promotions
# --------------------------------------------------------------------------------------------


def test_promotion_share_takes_one_position_in_five_with_its_reason():
    promo = Promotion("Summer sale", source="summer", share=0.2)
    cands = {
        P: source("p", 100),
        T: source("t", 100),
        C: source("c", 100),
        "summer": source("s", 100),
    }
    items = list(iter_feed(spec_311(promotions=[promo]), cands))[:50]
    promoted = [i for i in items if i.kind == "promotion"]
    assert [i.rank for i in promoted] == list(range(5, 51, 5))
    assert all(
        i.reason == "promoted: Summer sale" and i.promotion == "Summer sale" for i in promoted
    )
    assert all(i.source == "summer" and i.slot_index is None for i in promoted)
    # Promotions sit on top of the pattern: the organic items keep the 3+1+1 mix.
    organic = [i.source for i in items if i.kind != "promotion"]
    assert organic == [P, P, P, T, C] * 8


@pytest.mark.parametrize("share,expected", [(0.3, 30), (0.25, 25), (1 / 3, 33), (1.0, 100)])
def test_promotion_share_is_exact_over_a_hundred_positions(share, expected):
    promo = Promotion("p", candidates=source("s", 200), share=share)
    cands = {P: source("p", 200)}
    items = list(iter_feed(FeedSpec(slots=[Slot(P, 1)], promotions=[promo]), cands))[:100]
    assert sum(i.kind == "promotion" for i in items) == expected


def test_promotion_at_explicit_positions_and_when_it_runs_out():
    promo = Promotion(
        "Launch",
        candidates=[Candidate("new1"), Candidate("new2")],
        positions=[2, 4, 9],
        reason="new this week",
    )
    items = list(iter_feed(spec_311(promotions=[promo]), {P: source("p", 20), C: source("c", 5)}))
    assert [(i.rank, i.item_id, i.reason) for i in items if i.kind == "promotion"] == [
        (2, "new1", "new this week"),
        (4, "new2", "new this week"),
    ]
    assert items[1].source == "promotion:Launch"
    assert items[8].kind != "promotion"  # position 9: nothing left, the pattern fills it


def test_promotion_items_are_deduplicated_and_filtered_like_any_source():
    promo = Promotion(
        "Sale", candidates=[Candidate(x) for x in ["p0", "gone", "s1"]], positions=[5, 6]
    )
    spec = spec_311(promotions=[promo], exclude={"gone"})
    items = list(iter_feed(spec, {P: source("p", 10)}))
    assert [i.item_id for i in items if i.kind == "promotion"] == ["s1"]
    assert [i.item_id for i in items].count("p0") == 1


def test_first_promotion_wins_a_shared_position_and_the_second_takes_it_when_dry():
    a = Promotion("A", candidates=[Candidate("a1")], positions=[3, 6])
    b = Promotion("B", candidates=[Candidate("b1"), Candidate("b2")], positions=[3, 6])
    items = list(iter_feed(FeedSpec(slots=[Slot(P, 1)], promotions=[a, b]), {P: source("p", 9)}))
    assert (items[2].item_id, items[5].item_id) == ("a1", "b1")


def test_when_sources_are_exhausted_promotions_fill_the_rest():
    promo = Promotion("Sale", candidates=source("s", 4), share=0.5)
    items = list(iter_feed(FeedSpec(slots=[Slot(P, 1)], promotions=[promo]), {P: source("p", 1)}))
    assert [i.item_id for i in items] == ["p0", "s0", "s1", "s2", "s3"]


# --------------------------------------------------------------------------------------------
# Pinned items, exclusions and the allowed hook
# --------------------------------------------------------------------------------------------


def test_pinned_items_take_their_positions_and_never_appear_elsewhere():
    spec = spec_311(pinned={1: "p5", 7: "hero"})
    cands = {P: source("p", 30), T: source("t", 30), C: source("c", 30)}
    items = build_page(spec, cands, 15, secret_key=KEY).items
    assert (items[0].item_id, items[0].kind, items[0].reason) == (
        "p5",
        "pinned",
        "pinned at position 1",
    )
    assert items[6].item_id == "hero" and items[6].source == "pinned"
    ids = [i.item_id for i in items]
    assert ids.count("p5") == 1
    # The pattern goes around the pins: 3+1+1 over the other positions, p5 skipped in P.
    assert [i.source for i in items if i.kind != "pinned"][:10] == [P, P, P, T, C] * 2
    assert [i.item_id for i in items if i.source == P][:6] == ["p0", "p1", "p2", "p3", "p4", "p6"]


def test_pinned_item_beyond_the_end_is_shown_at_the_end_with_a_warning():
    spec = spec_311(pinned={50: "late"})
    page = build_page(spec, {P: source("p", 3)}, 20, secret_key=KEY)
    assert page.item_ids == ["p0", "p1", "p2", "late"]
    assert any(w.code == "pin-moved" and "position 50" in w.message for w in page.warnings)


def test_excluded_pinned_item_is_skipped_with_a_warning():
    spec = spec_311(pinned={2: "bad"}, allowed=lambda item_id: item_id != "bad")
    page = build_page(spec, {P: source("p", 5)}, 5, secret_key=KEY)
    assert page.item_ids == ["p0", "p1", "p2", "p3", "p4"]
    assert any(w.code == "pin-skipped" for w in page.warnings)


def test_exclusions_and_allowed_hook_apply_to_every_source():
    cands = {P: source("i", 20), T: source("i", 40)[20:], C: source("i", 60)[40:]}
    odd_only = FeedSpec(
        slots=[Slot(P, 3), Slot(T, 1), Slot(C, 1)],
        fallback=C,
        exclude={"i1", "i21", "i41"},
        allowed=lambda item_id: int(item_id[1:]) % 2 == 1,
    )
    ids = [i.item_id for i in iter_feed(odd_only, cands)]
    expected = {f"i{k}" for k in range(60) if k % 2 == 1} - {"i1", "i21", "i41"}
    assert set(ids) == expected and len(ids) == len(expected)
    as_set = FeedSpec(slots=[Slot(P, 1)], allowed={"i3", "i4"})
    assert [i.item_id for i in iter_feed(as_set, cands)] == ["i3", "i4"]


def test_allowed_from_a_filter_mask_over_catalogue_rows():
    rows = {"a": 0, "b": 1, "c": 2}
    mask = np.array([True, False, True])
    spec = FeedSpec(slots=[Slot(P, 1)], allowed=allowed_from_mask(mask, rows))
    cands = {P: [Candidate(x) for x in ["a", "b", "unknown", "c"]]}
    assert [i.item_id for i in iter_feed(spec, cands)] == ["a", "c"]


def test_ranked_converts_numpy_output():
    cands = ranked(np.array([7, 3, 9]), np.array([0.9, 0.5, 0.1], dtype=np.float32), "because")
    assert cands[0] == Candidate(7, pytest.approx(0.9), "because")
    assert type(cands[0].item_id) is int and type(cands[0].score) is float
    assert ranked(["x"]) == [Candidate("x", None, "")]
    with pytest.raises(ValueError, match="2 item ids but 1 scores"):
        ranked(["x", "y"], [1.0])


# --------------------------------------------------------------------------------------------
# Determinism and pagination
# --------------------------------------------------------------------------------------------


def test_same_inputs_give_the_same_page_and_cursor():
    promo = Promotion("Sale", source="s", share=0.25)
    spec = spec_311(promotions=[promo], pinned={3: "pin"}, exclude={"p2"})
    cands = {P: source("p", 40), T: source("t", 40), C: source("c", 40), "s": source("s", 40)}
    a = build_page(spec, cands, 12, secret_key=KEY, context="home:u1")
    b = build_page(spec, dict(reversed(list(cands.items()))), 12, secret_key=KEY, context="home:u1")
    assert a == b
    assert a.next_cursor == b.next_cursor


def test_page_two_equals_positions_11_to_20_of_one_long_page():
    promo = Promotion("Sale", source="s", share=0.2)
    spec = spec_311(promotions=[promo], pinned={13: "pin"})
    cands = {
        P: source("i", 30),
        T: source("i", 50)[10:],
        C: source("i", 70)[5:],
        "s": source("i", 90)[::3],
    }
    long = build_page(spec, cands, 40, secret_key=KEY).items
    page1 = build_page(spec, cands, 10, secret_key=KEY)
    page2 = build_page(spec, cands, 10, page1.next_cursor, secret_key=KEY)
    assert page1.items == long[:10]
    assert page2.items == long[10:20]


def test_cursor_is_compact_and_url_safe():
    cands = {P: source("p", 500), T: source("t", 500), C: source("c", 500)}
    cursor = None
    for _ in range(20):
        cursor = build_page(spec_311(), cands, 20, cursor, secret_key=KEY).next_cursor
    assert len(cursor) < 200
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_changed_candidates_between_pages_are_reported():
    cands = {P: source("p", 30), T: source("t", 30), C: source("c", 30)}
    page1 = build_page(spec_311(), cands, 10, secret_key=KEY)
    retrained = dict(cands, **{P: list(reversed(cands[P]))})
    page2 = build_page(spec_311(), retrained, 10, page1.next_cursor, secret_key=KEY)
    changed = [w for w in page2.warnings if w.code == "source-changed"]
    assert [w.source for w in changed] == [P]
    same = build_page(spec_311(), cands, 10, page1.next_cursor, secret_key=KEY)
    assert "source-changed" not in codes(same)


def test_source_missing_for_one_page_resumes_where_it_stopped():
    cands = {P: source("p", 30), T: source("t", 30), C: source("c", 30)}
    page1 = build_page(spec_311(), cands, 5, secret_key=KEY)
    without_t = {P: cands[P], C: cands[C]}
    page2 = build_page(spec_311(), without_t, 5, page1.next_cursor, secret_key=KEY)
    assert "source-missing" in codes(page2) and page2.items[3].fills_for == T
    page3 = build_page(spec_311(), cands, 5, page2.next_cursor, secret_key=KEY)
    assert page3.items[3].item_id == "t1"  # trending-now continues after t0
    assert "source-changed" not in codes(page3)


def _feed_strategy():
    names = ["a", "b", "c", "d"]
    item = st.integers(0, 40)
    lists = st.dictionaries(st.sampled_from(names), st.lists(item, max_size=25))
    slots = st.lists(st.tuples(st.sampled_from(names), st.integers(1, 3)), min_size=1, max_size=4)
    promo = st.tuples(
        st.one_of(st.sampled_from(names), st.lists(item, max_size=8)),
        st.one_of(
            st.sampled_from([0.1, 0.2, 0.25, 0.5, 1.0]),
            st.lists(st.integers(1, 40), min_size=1, max_size=4),
        ),
    )
    return st.fixed_dictionaries(
        {
            "lists": lists,
            "slots": slots,
            "fallback": st.one_of(st.none(), st.sampled_from(names)),
            "promos": st.lists(promo, max_size=2),
            "pins": st.dictionaries(st.integers(1, 45), item, max_size=3),
            "exclude": st.sets(item, max_size=5),
            "allowed": st.one_of(st.none(), st.sets(item, min_size=10)),
            "page_size": st.integers(1, 7),
        }
    )


def _build_spec(d):
    promotions = []
    for n, (src, where) in enumerate(d["promos"]):
        kwargs = (
            {"source": src}
            if isinstance(src, str)
            else {"candidates": [Candidate(x, float(-k)) for k, x in enumerate(src)]}
        )
        kwargs.update({"share": where} if isinstance(where, float) else {"positions": where})
        promotions.append(Promotion(f"promo{n}", **kwargs))
    pins = {}
    for pos, item_id in d["pins"].items():
        if item_id not in pins.values():
            pins[pos] = item_id
    return FeedSpec(
        slots=[Slot(s, c) for s, c in d["slots"]],
        fallback=d["fallback"],
        promotions=promotions,
        pinned=pins,
        exclude=d["exclude"],
        allowed=d["allowed"],
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_feed_strategy())
def test_property_concatenated_pages_equal_one_long_feed_without_repeats(d):
    spec = _build_spec(d)
    cands = {
        name: [Candidate(x, float(-k), f"from {name}") for k, x in enumerate(ids)]
        for name, ids in d["lists"].items()
    }
    long = list(iter_feed(spec, cands))
    pages = all_pages(spec, cands, d["page_size"], context="feed:user")
    paged = [i for page in pages for i in page.items]
    assert paged == long
    ids = [i.item_id for i in long]
    assert len(ids) == len(set(ids)), "an item repeats"
    assert [i.rank for i in long] == list(range(1, len(long) + 1))
    assert all(len(p.items) == d["page_size"] for p in pages[:-1])
    assert pages[-1].next_cursor is None
    # Everything eligible is shown before the feed ends.
    eligible = set()
    promo_lists = [p.candidates or cands.get(p.source, []) for p in spec.promotions]
    for lst in [cands.get(name, []) for name in spec.sources] + promo_lists:
        eligible |= {c.item_id for c in lst}
    eligible |= set(spec.pinned.values())
    eligible -= spec.exclude
    if spec.allowed is not None:
        eligible &= spec.allowed
    assert set(ids) == eligible


# --------------------------------------------------------------------------------------------
# Bad input and bad cursors
# --------------------------------------------------------------------------------------------


@pytest.fixture
def first_page():
    cands = {P: source("p", 30), T: source("t", 30), C: source("c", 30)}
    return cands, build_page(spec_311(), cands, 5, secret_key=KEY, context="home:u1")


def test_tampered_cursor_is_refused(first_page):
    cands, page = first_page
    payload, mac = page.next_cursor.split(".")
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    for bad in [
        f"{flipped}.{mac}",
        f"{payload}.{mac[::-1]}",
        payload,
        "",
        "x.y.z",
        "%%%.!!!",
        "a" * (MAX_CURSOR_LENGTH + 1),
    ]:
        with pytest.raises(InvalidCursor, match="invalid cursor"):
            build_page(spec_311(), cands, 5, bad, secret_key=KEY, context="home:u1")


def test_cursor_from_another_key_user_or_feed_is_refused(first_page):
    cands, page = first_page
    with pytest.raises(InvalidCursor, match="signature does not match"):
        build_page(spec_311(), cands, 5, page.next_cursor, secret_key="other", context="home:u1")
    with pytest.raises(InvalidCursor, match="signature does not match"):
        build_page(spec_311(), cands, 5, page.next_cursor, secret_key=KEY, context="home:u2")
    edited = FeedSpec(slots=[Slot(P, 2), Slot(T, 1), Slot(C, 1)], fallback=C)
    with pytest.raises(CursorSpecMismatch, match="different feed"):
        build_page(edited, cands, 5, page.next_cursor, secret_key=KEY, context="home:u1")
    # Exclusions and filters may change per request: the cursor stays valid.
    refiltered = spec_311(exclude={"p9"}, allowed=lambda i: True)
    build_page(refiltered, cands, 5, page.next_cursor, secret_key=KEY, context="home:u1")


def test_empty_spec_and_bad_slots_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match="a feed needs at least one slot"):
        FeedSpec(slots=[])
    with pytest.raises(ValueError, match=r"slot 2 \('trending-now'\) has count 0"):
        FeedSpec(slots=[Slot(P, 3), Slot(T, 0)])
    with pytest.raises(ValueError, match="count -1.*at least 1"):
        FeedSpec(slots=[Slot(P, -1)])
    with pytest.raises(ValueError, match="count 1.5"):
        FeedSpec(slots=[Slot(P, 1.5)])
    with pytest.raises(ValueError, match="slot 1 has no source"):
        FeedSpec(slots=[Slot("", 1)])
    with pytest.raises(ValueError, match="pinned twice"):
        FeedSpec(slots=[Slot(P, 1)], pinned={1: "a", 4: "a"})
    with pytest.raises(ValueError, match="pinned position 0"):
        FeedSpec(slots=[Slot(P, 1)], pinned={0: "a"})
    with pytest.raises(ValueError, match="two promotions are called 'x'"):
        FeedSpec(slots=[Slot(P, 1)], promotions=[Promotion("x", source=T, share=0.1)] * 2)
    # Tuples are accepted as slots.
    assert FeedSpec(slots=[(P, 2)]).slots == (Slot(P, 2),)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"source": T}, "exactly one of share"),
        ({"source": T, "share": 0.2, "positions": [1]}, "exactly one of share"),
        ({"share": 0.2}, "exactly one of source"),
        ({"source": T, "share": 0}, "above 0 and at most 1"),
        ({"source": T, "share": 1.5}, "above 0 and at most 1"),
        ({"source": T, "positions": [0]}, "position 0 is not valid"),
        ({"source": T, "positions": []}, "positions is empty"),
        ({"candidates": ["a"], "share": 0.2}, "candidate 1 is 'a'"),
    ],
)
def test_bad_promotions_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Promotion("Summer sale", **kwargs)


def test_bad_page_size_key_or_candidates_are_refused():
    cands = {P: source("p", 3)}
    for size in [0, -1, MAX_PAGE_SIZE + 1, 2.5, True]:
        with pytest.raises(ValueError, match="page_size"):
            build_page(spec_311(), cands, size, secret_key=KEY)
    with pytest.raises(ValueError, match="secret_key"):
        build_page(spec_311(), cands, 5, secret_key="")
    with pytest.raises(ValueError, match="candidate 2 is 7"):
        build_page(spec_311(), {P: [Candidate("a"), 7]}, 5, secret_key=KEY)
    with pytest.raises(ValueError, match="mapping of source name"):
        build_page(spec_311(), [("p", [])], 5, secret_key=KEY)


# ----------------------------------------------------------------------------- RankedColumns


def as_columns(candidates):
    return RankedColumns(
        [c.item_id for c in candidates],
        [c.score for c in candidates],
        [c.reason for c in candidates],
    )


def test_columns_give_the_same_pages_as_candidate_lists():
    lists = {P: source("p", 60, "for you"), T: source("t", 30), C: source("c", 90)}
    promo = [Candidate(f"s{i}") for i in range(20)] + [Candidate("p7")]  # one also in P

    def pages(wrap, promo_candidates):
        spec = spec_311(promotions=[Promotion("Sale", candidates=promo_candidates, share=0.2)])
        out, cursor = [], None
        for _ in range(4):
            page = build_page(spec, wrap(lists), 13, cursor, secret_key=KEY)
            out.append([(i.item_id, i.source, i.score, i.reason, i.rank) for i in page.items])
            cursor = page.next_cursor
        return out

    plain = pages(lambda d: d, promo)
    columns = pages(lambda d: {k: as_columns(v) for k, v in d.items()}, as_columns(promo))
    assert columns == plain
    assert len({item for page in plain for item, *_ in page}) == 4 * 13  # no repeat


def test_columns_read_like_a_list_of_candidates():
    columns = RankedColumns(["a", "b", "c"], [0.9, 0.5, 0.1])
    assert len(columns) == 3
    assert columns[1] == Candidate("b", 0.5, "")
    assert columns[:2] == [Candidate("a", 0.9, ""), Candidate("b", 0.5, "")]
    assert RankedColumns(["x"])[0] == Candidate("x", None, "")
    with pytest.raises(ValueError, match="2 item ids but 1 scores"):
        RankedColumns(["a", "b"], [0.1])
