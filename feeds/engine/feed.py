"""The feed engine: slot mixing, dedupe, fallback, promotions, pinning, reasons, pagination.

Django-free: plain dataclasses in, plain dataclasses out. The caller (API view, preview page,
notebook) fetches a ranked candidate list per source and passes them in; the engine decides which
item goes to which position of the feed and why. Typical use::

    spec = FeedSpec(
        slots=[Slot("user-personalization", 3), Slot("trending-now", 1),
               Slot("popularity-count", 1)],
        fallback="popularity-count",
        promotions=[Promotion("Summer sale", source="summer-sale", share=0.2)],
        pinned={1: "welcome-pack"},
        exclude={"sold-out-1"},
        allowed=lambda item_id: in_stock[item_id],      # or a set, or allowed_from_mask(...)
    )
    page = build_page(spec, {"user-personalization": ranked(ids, scores, "for you"), ...},
                      page_size=20, secret_key=settings.SECRET_KEY, context=f"{slug}:{user_id}")
    page.items        # FeedItem(item_id, source, score, rank, reason, slot_index, kind, ...)
    page.next_cursor  # pass back as cursor= for the next page; None at the end of the feed

How a position is filled (1-based absolute position ``q``):

1. a **pinned** item whose position is ``q`` (pinned items never come from any source elsewhere);
2. a **promotion** that claims ``q`` (by share, e.g. 0.2 -> positions 5, 10, 15, ..., or by
   explicit positions), first promotion in list order that still has an item;
3. the **slot pattern**: the slot whose turn it is asks its source, then the fallback, then the
   other sources in pattern order; the pattern advances only when a slot is filled, so promotions
   and pins are inserted on top of it and do not change the mix;
4. when every source is exhausted: any promotion with items left, then pinned items whose
   position lies beyond the end, in position order;
5. otherwise the feed ends.

Every item appears at most once in the whole feed (across sources, promotions, pins and pages).
Exclusions and the ``allowed`` hook apply to every source, promotion and pinned item.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from feeds.engine.cursor import (
    CursorSpecMismatch,
    CursorState,
    InvalidCursor,
    check_secret_key,
    decode_cursor,
    encode_cursor,
    prefix_digest,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "Candidate",
    "CursorSpecMismatch",
    "FeedItem",
    "FeedPage",
    "FeedSpec",
    "FeedWarning",
    "InvalidCursor",
    "Promotion",
    "RankedColumns",
    "Slot",
    "allowed_from_mask",
    "build_page",
    "iter_feed",
    "ranked",
]

MAX_PAGE_SIZE = 500
_SHARE_DENOMINATOR = 10_000

KIND_SLOT = "slot"
KIND_FALLBACK = "fallback"
KIND_PROMOTION = "promotion"
KIND_PINNED = "pinned"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One ranked item offered by a source: its id, the source's score and a reason in words.

    A named tuple: a feed's sources hand the engine hundreds per request, and a tuple is
    made three times faster than a frozen dataclass."""

    item_id: Hashable
    score: float | None = None
    reason: str = ""


class RankedColumns(Sequence):
    """A ranked list held as columns (ids, scores, reasons): the engine reads it like a list of
    :class:`Candidate`, made only for the items it looks at. For callers that keep many long
    lists and read a page of each (a feed's scroll sessions). ``scores``/``reasons`` None:
    no score, no reason."""

    __slots__ = ("ids", "scores", "reasons")

    def __init__(self, ids: list, scores: list | None = None, reasons: list | None = None):
        for name, column in (("scores", scores), ("reasons", reasons)):
            if column is not None and len(column) != len(ids):
                raise ValueError(
                    f"RankedColumns got {len(ids)} item ids but {len(column)} {name}; pass one "
                    "per item (or None)."
                )
        self.ids, self.scores, self.reasons = ids, scores, reasons

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self.ids)))]
        return Candidate(
            self.ids[index],
            None if self.scores is None else self.scores[index],
            "" if self.reasons is None else self.reasons[index],
        )


def ranked(item_ids: Sequence[Any], scores: Sequence[Any] | None = None, reason: str = ""):
    """Turn a recipe's output (ids best first, optional scores; lists or numpy arrays) into
    a list of :class:`Candidate`, converting numpy scalars to plain Python values."""
    ids = item_ids.tolist() if hasattr(item_ids, "tolist") else list(item_ids)
    if scores is None:
        return [Candidate(i, None, reason) for i in ids]
    vals = scores.tolist() if hasattr(scores, "tolist") else list(scores)
    if len(vals) != len(ids):
        raise ValueError(
            f"ranked() got {len(ids)} item ids but {len(vals)} scores; pass one score per item."
        )
    return [Candidate(i, float(s), reason) for i, s in zip(ids, vals, strict=True)]


def allowed_from_mask(mask: Sequence[bool], item_rows: Mapping[Hashable, int]):
    """Adapt a boolean mask over catalogue rows (what ``Filter.mask`` returns) to the engine's
    ``allowed`` hook. ``item_rows`` maps an item id to its row; ids not in it are not allowed."""
    flags = mask.tolist() if hasattr(mask, "tolist") else list(mask)

    def allowed(item_id: Hashable) -> bool:
        row = item_rows.get(item_id)
        return row is not None and bool(flags[row])

    return allowed


@dataclass(frozen=True)
class Slot:
    """``count`` consecutive positions of the pattern filled from ``source``."""

    source: str
    count: int = 1


@dataclass(frozen=True)
class Promotion:
    """Reserve positions for items of a source (by name) or of an explicit candidate list.

    Give exactly one of ``source`` / ``candidates`` and exactly one of ``share`` (0 < share <= 1:
    the fraction of positions, spread evenly: 0.2 -> positions 5, 10, 15, ...) / ``positions``
    (absolute 1-based positions in the feed). ``reason`` defaults to ``"promoted: <name>"``.
    """

    name: str
    source: str | None = None
    candidates: Sequence[Candidate] | None = None
    share: float | None = None
    positions: Collection[int] | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("a promotion needs a name, e.g. Promotion('Summer sale', ...)")
        where = f"promotion '{self.name}'"
        if (self.source is None) == (self.candidates is None):
            raise ValueError(
                f"{where}: give exactly one of source= (a source name) or candidates= "
                "(a ranked list of Candidate)."
            )
        if self.source is not None and (not isinstance(self.source, str) or not self.source):
            raise ValueError(f"{where}: source must be a non-empty source name.")
        if self.candidates is not None:
            object.__setattr__(self, "candidates", _as_candidates(self.candidates, where))
        if (self.share is None) == (self.positions is None):
            raise ValueError(
                f"{where}: give exactly one of share= (e.g. 0.2 for one position in five) "
                "or positions= (e.g. [3, 10])."
            )
        if self.share is not None:
            if isinstance(self.share, bool) or not isinstance(self.share, int | float):
                raise ValueError(f"{where}: share must be a number between 0 and 1, e.g. 0.2.")
            if not 0 < self.share <= 1:
                raise ValueError(
                    f"{where}: share is {self.share}; it must be above 0 and at most 1 "
                    "(0.2 = one position in five)."
                )
            frac = Fraction(self.share).limit_denominator(_SHARE_DENOMINATOR)
            object.__setattr__(self, "_share", frac)
        else:
            positions = list(self.positions)
            for p in positions:
                if isinstance(p, bool) or not isinstance(p, int) or p < 1:
                    raise ValueError(
                        f"{where}: position {p!r} is not valid; positions are whole numbers "
                        "from 1 (the first item of the feed)."
                    )
            if not positions:
                raise ValueError(f"{where}: positions is empty; give at least one position.")
            object.__setattr__(self, "positions", tuple(sorted(set(positions))))
            object.__setattr__(self, "_share", None)
        if not self.reason:
            object.__setattr__(self, "reason", f"promoted: {self.name}")

    def claims(self, position: int) -> bool:
        """Whether this promotion wants the 1-based absolute ``position``."""
        share: Fraction | None = self._share  # type: ignore[attr-defined]
        if share is None:
            return position in self.positions  # type: ignore[operator]
        num, den = share.numerator, share.denominator
        return (position * num) // den > ((position - 1) * num) // den

    @property
    def label(self) -> str:
        """What :attr:`FeedItem.source` says for this promotion's items."""
        return self.source if self.source is not None else f"promotion:{self.name}"


@dataclass(frozen=True)
class FeedSpec:
    """A feed: an ordered slot pattern plus the rules applied on top of it.

    ``pinned`` maps 1-based absolute positions to item ids. ``exclude`` is a collection of item
    ids never shown. ``allowed`` is the filter hook: ``None`` (everything allowed), a callable
    ``item_id -> bool``, or a collection of allowed ids. ``exclude`` and ``allowed`` may differ
    from request to request (they are not part of the cursor's fingerprint); everything else
    defines the feed.
    """

    slots: Sequence[Slot]
    fallback: str | None = None
    promotions: Sequence[Promotion] = ()
    pinned: Mapping[int, Hashable] = field(default_factory=dict)
    exclude: Collection[Hashable] = frozenset()
    allowed: Callable[[Hashable], bool] | Collection[Hashable] | None = None

    def __post_init__(self) -> None:
        slots = list(self.slots) if self.slots is not None else []
        if not slots:
            raise ValueError(
                "a feed needs at least one slot, e.g. Slot('user-personalization', 3)."
            )
        clean: list[Slot] = []
        for n, slot in enumerate(slots, start=1):
            if isinstance(slot, tuple) and len(slot) == 2:
                slot = Slot(*slot)
            if not isinstance(slot, Slot):
                raise ValueError(f"slot {n} is {slot!r}; each slot must be Slot(source, count).")
            if not isinstance(slot.source, str) or not slot.source.strip():
                raise ValueError(f"slot {n} has no source; name a campaign or recipe source.")
            if isinstance(slot.count, bool) or not isinstance(slot.count, int) or slot.count < 1:
                raise ValueError(
                    f"slot {n} ('{slot.source}') has count {slot.count!r}; a slot's count must "
                    "be a whole number of at least 1 (how many items its source places per "
                    "turn of the pattern)."
                )
            clean.append(slot)
        object.__setattr__(self, "slots", tuple(clean))
        if self.fallback is not None and (
            not isinstance(self.fallback, str) or not self.fallback.strip()
        ):
            raise ValueError("fallback must be a source name such as 'popularity-count', or None.")

        promotions = tuple(self.promotions or ())
        names = set()
        for promo in promotions:
            if not isinstance(promo, Promotion):
                raise ValueError(f"promotions must be Promotion objects, got {promo!r}.")
            if promo.name in names:
                raise ValueError(
                    f"two promotions are called '{promo.name}'; give each a distinct name."
                )
            names.add(promo.name)
        object.__setattr__(self, "promotions", promotions)

        pins: dict[int, Hashable] = {}
        seen_items: dict[Hashable, int] = {}
        for position, item_id in dict(self.pinned or {}).items():
            if isinstance(position, bool) or not isinstance(position, int) or position < 1:
                raise ValueError(
                    f"pinned position {position!r} is not valid; positions are whole numbers "
                    "from 1 (the first item of the feed)."
                )
            if item_id in seen_items:
                raise ValueError(
                    f"item {item_id!r} is pinned twice (positions {seen_items[item_id]} and "
                    f"{position}); an item appears at most once in a feed."
                )
            seen_items[item_id] = position
            pins[position] = item_id
        object.__setattr__(self, "pinned", pins)
        object.__setattr__(self, "exclude", frozenset(self.exclude or ()))

        allowed = self.allowed
        if allowed is not None and not callable(allowed) and not hasattr(allowed, "__contains__"):
            raise ValueError(
                "allowed must be None, a callable item_id -> bool, or a collection of allowed "
                f"item ids; got {type(allowed).__name__}."
            )

        # Derived, fixed for the life of the spec.
        sources: list[str] = []
        for slot in clean:
            if slot.source not in sources:
                sources.append(slot.source)
        if self.fallback is not None and self.fallback not in sources:
            sources.append(self.fallback)
        object.__setattr__(self, "_sources", tuple(sources))
        index = {name: i for i, name in enumerate(sources)}
        fallback_i = index.get(self.fallback) if self.fallback is not None else None
        pattern_is = [index[name] for name in dict.fromkeys(s.source for s in clean)]
        orders = []
        for slot in clean:
            own = index[slot.source]
            order = [own]
            if fallback_i is not None and fallback_i != own:
                order.append(fallback_i)
            order += [i for i in pattern_is if i not in order]
            orders.append(tuple(order))
        object.__setattr__(self, "_try_orders", tuple(orders))
        cumulative, total = [], 0
        for slot in clean:
            total += slot.count
            cumulative.append(total)
        object.__setattr__(self, "_cumulative", tuple(cumulative))
        object.__setattr__(self, "_pins_sorted", tuple(sorted(pins.items())))
        object.__setattr__(self, "_fingerprint", self._compute_fingerprint())

    @property
    def sources(self) -> tuple[str, ...]:
        """Distinct source names: slot sources in pattern order, then the fallback."""
        return self._sources  # type: ignore[attr-defined]

    @property
    def pattern_length(self) -> int:
        """Positions in one turn of the pattern (sum of the slot counts)."""
        return self._cumulative[-1]  # type: ignore[attr-defined]

    @property
    def fingerprint(self) -> str:
        """A short hash of what defines the feed (slots, fallback, promotions, pins)."""
        return self._fingerprint  # type: ignore[attr-defined]

    def slot_at_turn(self, turn: int) -> int:
        """The 0-based slot index whose turn it is after ``turn`` slot-filled positions."""
        cumulative = self._cumulative  # type: ignore[attr-defined]
        return bisect.bisect_right(cumulative, turn % cumulative[-1])

    def _compute_fingerprint(self) -> str:
        canonical = {
            "slots": [[s.source, s.count] for s in self.slots],
            "fallback": self.fallback,
            "promotions": [
                [
                    p.name,
                    p.source,
                    p.candidates is not None,
                    str(p._share) if p._share is not None else None,  # type: ignore[attr-defined]
                    list(p.positions) if p.positions is not None else None,
                    p.reason,
                ]
                for p in self.promotions
            ],
            "pinned": [[pos, str(item)] for pos, item in sorted(self.pinned.items())],
        }
        raw = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()
        return hashlib.blake2b(raw, digest_size=8).hexdigest()


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One position of the feed.

    ``source`` is the source that supplied the item (for a promotion: its source name, or
    ``promotion:<name>`` for an explicit list; ``pinned`` for a pinned item). ``rank`` is the
    1-based absolute position in the whole feed. ``slot_index`` is the 0-based index of the slot
    whose turn it was (``None`` for promotions and pinned items). ``kind`` is ``slot``,
    ``fallback`` (another source filled the slot; ``fills_for`` names the slot's own source),
    ``promotion`` or ``pinned``.
    """

    item_id: Hashable
    source: str
    score: float | None
    rank: int
    reason: str
    slot_index: int | None
    kind: str = KIND_SLOT
    promotion: str | None = None
    fills_for: str | None = None


@dataclass(frozen=True, slots=True)
class FeedWarning:
    """Something a feed editor should know (a missing or exhausted source, a skipped pin...)."""

    code: str
    message: str
    source: str | None = None
    position: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FeedPage:
    """A page of the feed. ``next_cursor`` is ``None`` when the feed has nothing more."""

    items: list[FeedItem]
    next_cursor: str | None
    warnings: list[FeedWarning]
    start: int  # rank of the first item on this page

    @property
    def item_ids(self) -> list[Hashable]:
        return [item.item_id for item in self.items]


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def _as_candidates(entries: Sequence[Any], where: str) -> Sequence[Candidate]:
    if isinstance(entries, RankedColumns):
        return entries  # its items are Candidates by construction
    if isinstance(entries, str | bytes) or not hasattr(entries, "__iter__"):
        raise ValueError(f"{where}: candidates must be a list of Candidate, got {entries!r}.")
    entries = tuple(entries)
    if set(map(type, entries)) <= {Candidate}:  # the usual case, checked without a loop
        return entries
    out = []
    for n, entry in enumerate(entries, start=1):
        if isinstance(entry, Candidate):
            out.append(entry)
        elif isinstance(entry, tuple) and 1 <= len(entry) <= 3:
            out.append(Candidate(*entry))
        else:
            raise ValueError(
                f"{where}: candidate {n} is {entry!r}; expected Candidate(item_id, score, reason) "
                "or a tuple (item_id, score[, reason])."
            )
    return tuple(out)


def _unavailable(name: str) -> str:
    return (
        f"source '{name}' is not available (no candidates were supplied for it: its campaign "
        "may have been deleted or failed to load)"
    )


class _Run:
    """The mutable walk along one feed. Created per page; restored from a cursor."""

    def __init__(self, spec: FeedSpec, candidates: Mapping[str, Sequence[Any]]):
        if not isinstance(spec, FeedSpec):
            raise ValueError(f"spec must be a FeedSpec, got {type(spec).__name__}.")
        if not isinstance(candidates, Mapping):
            raise ValueError(
                "candidates must be a mapping of source name -> ranked list of Candidate, got "
                f"{type(candidates).__name__}."
            )
        self.spec = spec
        self.setup_warnings: list[FeedWarning] = []
        self.lists: list[Sequence[Candidate]] = []
        self.missing: list[bool] = []
        for name in spec.sources:
            entries = candidates.get(name)
            self.missing.append(entries is None)
            self.lists.append(() if entries is None else _as_candidates(entries, f"'{name}'"))
            if entries is None:
                self.setup_warnings.append(self._missing_warning(name))
        self.promo_lists: list[Sequence[Candidate]] = []
        self.promo_missing: list[bool] = []
        for promo in spec.promotions:
            if promo.candidates is not None:
                entries: Any = promo.candidates
            else:
                entries = candidates.get(promo.source)
            self.promo_missing.append(entries is None)
            self.promo_lists.append(
                () if entries is None else _as_candidates(entries, f"promotion '{promo.name}'")
            )
            if entries is None:
                self.setup_warnings.append(
                    FeedWarning(
                        "source-missing",
                        f"promotion '{promo.name}': {_unavailable(promo.source)}; the promotion "
                        "shows nothing until it is back.",
                        source=promo.source,
                    )
                )

        exclude = spec.exclude
        pinned_ids = frozenset(spec.pinned.values())
        allowed = spec.allowed
        if allowed is None:
            allowed_fn: Callable[[Hashable], bool] | None = None
        elif callable(allowed):
            allowed_fn = allowed
        else:
            allowed_fn = allowed.__contains__
        self._exclude = exclude
        self._allowed = allowed_fn
        self._pinned_ids = pinned_ids
        self._eligible: dict[Hashable, bool] = {}

        n = len(spec.sources)
        self.position = 0
        self.turns = 0
        self.pins_done = 0
        self.offsets = [0] * n
        self.promo_offsets = [0] * len(spec.promotions)
        self.dry_mask = 0
        self.shown: set[Hashable] = set()
        # Digests carried over for sources that are missing on this request.
        self._old_digests = [0] * n
        self._old_promo_digests = [0] * len(spec.promotions)

    # -- setup ----------------------------------------------------------------------------

    def _missing_warning(self, name: str) -> FeedWarning:
        spec = self.spec
        if name == spec.fallback:
            tail = "slots whose source runs dry are filled from the other sources in pattern order."
            return FeedWarning(
                "source-missing", f"the fallback {_unavailable(name)}; {tail}", source=name
            )
        if spec.fallback is not None:
            tail = f"its slots are filled from the fallback '{spec.fallback}'."
        else:
            tail = "its slots are filled from the other sources in pattern order."
        return FeedWarning("source-missing", f"{_unavailable(name)}; {tail}", source=name)

    def restore(self, state: CursorState, warnings: list[FeedWarning]) -> None:
        spec = self.spec
        self.position = state.position
        self.turns = state.turns
        self.pins_done = min(state.pins_done, len(spec._pins_sorted))  # type: ignore[attr-defined]
        self.dry_mask = state.dry_mask
        self._old_digests = list(state.source_digests)
        self._old_promo_digests = list(state.promotion_digests)
        groups = (
            (
                spec.sources,
                self.lists,
                self.missing,
                state.source_offsets,
                state.source_digests,
                self.offsets,
            ),
            (
                [p.label for p in spec.promotions],
                self.promo_lists,
                self.promo_missing,
                state.promotion_offsets,
                state.promotion_digests,
                self.promo_offsets,
            ),
        )
        for names, lists, missing, offsets, digests, target in groups:
            for i, name in enumerate(names):
                offset = offsets[i]
                target[i] = offset
                if missing[i] or offset == 0:
                    continue
                lst = lists[i]
                if (
                    offset > len(lst)
                    or prefix_digest(c.item_id for c in lst[:offset]) != digests[i]
                ):
                    target[i] = min(offset, len(lst))
                    warnings.append(
                        FeedWarning(
                            "source-changed",
                            f"the candidates of '{name}' changed since the previous page "
                            "(retrained, updated or shortened); an item shown on an earlier page "
                            "may appear again.",
                            source=name,
                            position=self.position,
                        )
                    )
                for c in lst[: target[i]]:
                    if self.eligible(c.item_id):
                        self.shown.add(c.item_id)

    def snapshot(self) -> CursorState:
        def digests(lists, offsets, missing, old):
            return [
                old[i] if missing[i] else prefix_digest(c.item_id for c in lst[: offsets[i]])
                for i, lst in enumerate(lists)
            ]

        return CursorState(
            spec_fingerprint=self.spec.fingerprint,
            position=self.position,
            turns=self.turns,
            pins_done=self.pins_done,
            source_offsets=list(self.offsets),
            promotion_offsets=list(self.promo_offsets),
            dry_mask=self.dry_mask,
            source_digests=digests(self.lists, self.offsets, self.missing, self._old_digests),
            promotion_digests=digests(
                self.promo_lists, self.promo_offsets, self.promo_missing, self._old_promo_digests
            ),
        )

    # -- taking items ---------------------------------------------------------------------

    def eligible(self, item_id: Hashable) -> bool:
        verdict = self._eligible.get(item_id)
        if verdict is None:
            verdict = (
                item_id not in self._exclude
                and item_id not in self._pinned_ids
                and (self._allowed is None or bool(self._allowed(item_id)))
            )
            self._eligible[item_id] = verdict
        return verdict

    def _take(self, lst: Sequence[Candidate], offsets: list[int], i: int) -> Candidate | None:
        k, n = offsets[i], len(lst)
        shown = self.shown
        while k < n:
            cand = lst[k]
            k += 1
            if cand.item_id not in shown and self.eligible(cand.item_id):
                offsets[i] = k
                return cand
        offsets[i] = n
        return None

    def _mark_dry(self, bit: int) -> bool:
        """Set a dry bit; True when it was not set before (first time we notice)."""
        mask = 1 << bit
        if self.dry_mask & mask:
            return False
        self.dry_mask |= mask
        return True

    def take_source(self, i: int, newly_dry: list[str]) -> Candidate | None:
        if self.missing[i]:
            return None
        cand = self._take(self.lists[i], self.offsets, i)
        if cand is None and self._mark_dry(i):
            newly_dry.append(self.spec.sources[i])
        return cand

    def take_promotion(self, j: int, q: int, warnings: list[FeedWarning]) -> Candidate | None:
        if self.promo_missing[j]:
            return None
        cand = self._take(self.promo_lists[j], self.promo_offsets, j)
        if cand is None and self._mark_dry(len(self.spec.sources) + j):
            promo = self.spec.promotions[j]
            warnings.append(
                FeedWarning(
                    "promotion-dry",
                    f"promotion '{promo.name}' has no items left at position {q} (all shown, "
                    "excluded or filtered out); its positions are filled by the slot pattern.",
                    source=promo.label,
                    position=q,
                )
            )
        return cand

    # -- one position ---------------------------------------------------------------------

    def _emit(self, cand: Candidate, **fields: Any) -> FeedItem:
        self.shown.add(cand.item_id)
        return FeedItem(item_id=cand.item_id, score=cand.score, rank=self.position, **fields)

    def _promotion_item(self, j: int, cand: Candidate) -> FeedItem:
        promo = self.spec.promotions[j]
        return self._emit(
            cand,
            source=promo.label,
            reason=promo.reason,
            slot_index=None,
            kind=KIND_PROMOTION,
            promotion=promo.name,
        )

    def _pin_ok(self, pin_position: int, item_id: Hashable, q: int, warnings) -> bool:
        if item_id not in self._exclude and (self._allowed is None or bool(self._allowed(item_id))):
            return True
        warnings.append(
            FeedWarning(
                "pin-skipped",
                f"pinned item {item_id!r} (position {pin_position}) is excluded or not allowed "
                f"by the filter; position {q} was filled normally.",
                position=q,
            )
        )
        return False

    def step(self, warnings: list[FeedWarning]) -> FeedItem | None:
        """Fill the next position, or return None when the feed is exhausted."""
        spec = self.spec
        q = self.position + 1
        pins = spec._pins_sorted  # type: ignore[attr-defined]

        # 1. A pinned item at this position.
        while self.pins_done < len(pins) and pins[self.pins_done][0] <= q:
            pin_position, item_id = pins[self.pins_done]
            self.pins_done += 1
            if self._pin_ok(pin_position, item_id, q, warnings):
                self.position = q
                self.shown.add(item_id)
                return FeedItem(
                    item_id=item_id,
                    source="pinned",
                    score=None,
                    rank=q,
                    reason=f"pinned at position {pin_position}",
                    slot_index=None,
                    kind=KIND_PINNED,
                )

        # 2. A promotion that claims this position.
        for j, promo in enumerate(spec.promotions):
            if promo.claims(q):
                cand = self.take_promotion(j, q, warnings)
                if cand is not None:
                    self.position = q
                    return self._promotion_item(j, cand)

        # 3. The slot pattern: own source, fallback, other sources in pattern order.
        slot_index = spec.slot_at_turn(self.turns)
        slot = spec.slots[slot_index]
        newly_dry: list[str] = []
        for i in spec._try_orders[slot_index]:  # type: ignore[attr-defined]
            cand = self.take_source(i, newly_dry)
            if cand is not None:
                filler = spec.sources[i]
                self._report_dry(newly_dry, q, filler, warnings)
                self.position = q
                self.turns += 1
                own = filler == slot.source
                return self._emit(
                    cand,
                    source=filler,
                    reason=cand.reason or f"from {filler}",
                    slot_index=slot_index,
                    kind=KIND_SLOT if own else KIND_FALLBACK,
                    fills_for=None if own else slot.source,
                )

        # 4. Every source is exhausted: promotions with items left.
        for j in range(len(spec.promotions)):
            cand = self.take_promotion(j, q, warnings)
            if cand is not None:
                self._report_dry(newly_dry, q, f"promotion '{spec.promotions[j].name}'", warnings)
                self.position = q
                return self._promotion_item(j, cand)

        # 5. Then pinned items whose position lies beyond the end, in position order.
        while self.pins_done < len(pins):
            pin_position, item_id = pins[self.pins_done]
            self.pins_done += 1
            if self._pin_ok(pin_position, item_id, q, warnings):
                self._report_dry(newly_dry, q, "a pinned item", warnings)
                warnings.append(
                    FeedWarning(
                        "pin-moved",
                        f"pinned item {item_id!r} was meant for position {pin_position}, but "
                        f"the feed ran out of items before it; it is shown at position {q}.",
                        position=q,
                    )
                )
                self.position = q
                self.shown.add(item_id)
                return FeedItem(
                    item_id=item_id,
                    source="pinned",
                    score=None,
                    rank=q,
                    reason=f"pinned (meant for position {pin_position})",
                    slot_index=None,
                    kind=KIND_PINNED,
                )

        self._report_dry(newly_dry, q, None, warnings)
        return None

    def _report_dry(self, names: list[str], q: int, filler: str | None, warnings) -> None:
        spec = self.spec
        for name in names:
            if filler is None:
                tail = "no other source had items left"
            elif filler == spec.fallback:
                tail = f"the fallback '{filler}' filled it"
            elif filler in spec.sources:
                tail = f"'{filler}' (next source in the pattern) filled it"
            else:
                tail = f"{filler} filled it"
            warnings.append(
                FeedWarning(
                    "source-dry",
                    f"source '{name}' ran dry at position {q}; {tail}.",
                    source=name,
                    position=q,
                )
            )


def iter_feed(spec: FeedSpec, candidates: Mapping[str, Sequence[Any]]) -> Iterator[FeedItem]:
    """Every item of the feed from position 1 until everything is exhausted (no pagination)."""
    run = _Run(spec, candidates)
    while (item := run.step([])) is not None:
        yield item


def build_page(
    spec: FeedSpec,
    candidates: Mapping[str, Sequence[Any]],
    page_size: int,
    cursor: str | None = None,
    *,
    secret_key: bytes | str,
    context: str = "",
) -> FeedPage:
    """Build one page of the feed.

    ``candidates`` maps each source name to its ranked list (best first) of :class:`Candidate`
    (or ``(item_id, score[, reason])`` tuples). A source of the spec that is absent from the
    mapping is treated as empty and reported in the warnings. ``cursor`` is the previous page's
    ``next_cursor``; ``secret_key`` signs cursors and ``context`` (e.g. ``"<feed>:<user>"``) binds
    them to one feed and reader. Raises :class:`InvalidCursor` for a cursor that was altered,
    signed with another key or context, or issued for another spec (:class:`CursorSpecMismatch`),
    and ``ValueError`` for a bad page size or bad candidates.

    Page *n* built from page *n-1*'s cursor is exactly positions ``(n-1)*size+1 .. n*size`` of
    the whole feed, as long as the candidate lists, exclusions and filter stay the same.
    """
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not (1 <= page_size <= MAX_PAGE_SIZE)
    ):
        raise ValueError(
            f"page_size is {page_size!r}; it must be a whole number from 1 to {MAX_PAGE_SIZE}."
        )
    check_secret_key(secret_key)
    run = _Run(spec, candidates)
    warnings = list(run.setup_warnings)
    if cursor is not None:
        state = decode_cursor(
            cursor,
            secret_key=secret_key,
            context=context,
            spec_fingerprint=spec.fingerprint,
            n_sources=len(spec.sources),
            n_promotions=len(spec.promotions),
        )
        run.restore(state, warnings)
    start = run.position + 1
    items: list[FeedItem] = []
    while len(items) < page_size:
        item = run.step(warnings)
        if item is None:
            break
        items.append(item)
    next_cursor = None
    if len(items) == page_size:
        state = run.snapshot()
        if run.step([]) is not None:
            next_cursor = encode_cursor(state, secret_key=secret_key, context=context)
    if next_cursor is None:
        end = start + len(items) - 1
        message = (
            f"the feed ends at position {end}: every source is exhausted (all items shown, "
            "excluded or filtered out)."
            if end >= 1
            else "the feed is empty: no source has any item left after exclusions and filters."
        )
        warnings.append(FeedWarning("feed-end", message, position=end))
    return FeedPage(items=items, next_cursor=next_cursor, warnings=warnings, start=start)
