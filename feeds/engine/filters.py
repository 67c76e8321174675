"""Filter expressions for serving and feeds: compile once, evaluate per request with numpy.

Django-free. Typical use::

    table = ItemTable(columns, schema=schema)          # once per catalogue / model version
    flt = compile_filter('EXCLUDE ItemID WHERE Items.in_stock = false '
                         '| INCLUDE ItemID WHERE Items.category IN ($CATS)', schema=schema)
    allowed = flt.mask(table, values={"CATS": '"Shoes","Bags"'},
                       interactions=UserInteractions(item_rows, event_types, timestamps))
    scores[~allowed] = -inf

Semantics follow Amazon Personalize: when there is at least one INCLUDE statement, only items
matched by some INCLUDE statement are allowed; items matched by any EXCLUDE statement are
removed; statement order does not matter. ``Items`` conditions test the candidate item's
attributes, ``Interactions`` conditions select the items the requesting user interacted with
(one event must satisfy the whole condition), ``Users`` conditions decide whether a statement
applies to the requesting user at all, and ``CurrentItem.<field>`` is the value of the source
item of a related-items request. Missing values never match, not even ``!=`` or ``NOT IN``.

The syntax lives in :mod:`feeds.engine.filter_syntax`; its public names are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from feeds.engine.filter_syntax import (
    CURRENT_ITEM,
    EXCLUDE,
    IN_OPERATORS,
    INCLUDE,
    MAX_CONDITIONS,
    MAX_EXPRESSION_LENGTH,
    MAX_IN_VALUES,
    MAX_NESTING,
    MAX_STATEMENTS,
    ORDERING_OPERATORS,
    BoolOp,
    Comparison,
    Condition,
    CurrentItemRef,
    Field,
    FilterError,
    FilterExpression,
    FilterParameterError,
    FilterSemanticError,
    FilterSyntaxError,
    Literal,
    Param,
    Statement,
    bind,
    iter_comparisons,
    lookup,
    parameter_literals,
    parse,
    render,
    resolve_parameter,
)

__all__ = [
    "EXCLUDE",
    "INCLUDE",
    "MAX_CONDITIONS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_IN_VALUES",
    "MAX_NESTING",
    "MAX_STATEMENTS",
    "BoolOp",
    "Comparison",
    "CurrentItemRef",
    "Field",
    "Filter",
    "FilterError",
    "FilterExpression",
    "FilterParameterError",
    "FilterSemanticError",
    "FilterSyntaxError",
    "ItemTable",
    "Literal",
    "Param",
    "Statement",
    "UserInteractions",
    "bind",
    "compile_filter",
    "parameter_literals",
    "parse",
    "render",
]

# Value kinds a field can have. "timestamp" is numeric (epoch seconds) and also accepts ISO
# 8601 text; "multi" is a categorical field holding several values ("Shoes|Running").
NUMERIC, TIMESTAMP, BOOLEAN, STRING, MULTI = "numeric", "timestamp", "boolean", "string", "multi"
SCHEMA_KINDS = {
    "numeric": NUMERIC,
    "timestamp": TIMESTAMP,
    "boolean": BOOLEAN,
    "categorical": STRING,
    "id": STRING,
    "text": STRING,
}
KIND_WORDS = {
    NUMERIC: "a number",
    TIMESTAMP: "a timestamp",
    BOOLEAN: "true or false",
    STRING: "text",
    MULTI: "a list of values",
}
# Interactions fields are fixed by the interactions schema.
INTERACTION_FIELDS = {
    "event_type": ("EVENT_TYPE", STRING),
    "event_value": ("EVENT_VALUE", NUMERIC),
    "timestamp": ("TIMESTAMP", TIMESTAMP),
}
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
ANY_EVENT = "*"


# --------------------------------------------------------------------------- schema


def normalize_schema(schema) -> dict[str, dict[str, tuple[str, str]]]:
    """``{"Items": {lower name: (name, kind)}, "Users": {...}}`` from a flexible schema.

    ``schema`` maps a dataset name ("items", "users", any case) to fields given as objects
    with ``name``/``type``/``multi`` attributes (``datasets.ingest.schema.Field``), dicts with
    those keys, or a mapping of field name to type ("numeric", "categorical", ...).
    """
    result: dict[str, dict[str, tuple[str, str]]] = {}
    if not schema:
        return result
    for dataset, fields in schema.items():
        canonical = {"items": "Items", "users": "Users"}.get(str(dataset).lower())
        if canonical is None:
            continue  # interactions have a fixed schema; relations are not filterable
        bucket = result.setdefault(canonical, {})
        entries: list[tuple[str, str, bool]] = []
        if isinstance(fields, Mapping):
            for name, spec in fields.items():
                if isinstance(spec, Mapping):
                    entries.append((name, spec.get("type", "text"), bool(spec.get("multi"))))
                else:
                    entries.append((name, str(spec), False))
        else:
            for spec in fields:
                if isinstance(spec, Mapping):
                    multi = bool(spec.get("multi"))
                    entries.append((spec["name"], spec.get("type", "text"), multi))
                else:
                    entries.append((spec.name, spec.type, bool(getattr(spec, "multi", False))))
        for name, type_, multi in entries:
            kind = MULTI if multi else SCHEMA_KINDS.get(str(type_).lower(), STRING)
            bucket[name.lower()] = (name, kind)
    return result


# --------------------------------------------------------------------------- item table


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value == ""
    return value is pd.NaT


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_number(value) -> float:
    """float(value) or NaN; accepts numbers, numeric text and ISO timestamps."""
    if _is_missing(value) or isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return _iso_seconds(text)
    except ValueError:
        return math.nan


def _iso_seconds(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _to_bool_code(value) -> int:
    if _is_missing(value):
        return -1
    if isinstance(value, bool | np.bool_):
        return int(bool(value))
    if isinstance(value, int | float | np.integer | np.floating):
        return 1 if value == 1 else 0 if value == 0 else -1
    word = str(value).strip().lower()
    return 1 if word in TRUE_WORDS else 0 if word in FALSE_WORDS else -1


@dataclass
class _Column:
    name: str
    kind: str
    numbers: np.ndarray | None = None  # NUMERIC / TIMESTAMP: float64, NaN = missing
    flags: np.ndarray | None = None  # BOOLEAN: int8, 1 / 0 / -1 missing
    codes: np.ndarray | None = None  # STRING: int32 per item, len(vocabulary) = missing
    vocabulary: dict | None = None  # STRING / MULTI: value -> code
    has_value: np.ndarray | None = None  # STRING / MULTI: the item has at least one value
    # STRING / MULTI inverted index: rows having code c are posting_rows[starts[c]:starts[c+1]]
    posting_rows: np.ndarray | None = None
    posting_starts: np.ndarray | None = None

    def rows_with(self, codes: list[int], n_items: int) -> np.ndarray:
        """Boolean array: the item has one of the value ``codes``."""
        starts, rows = self.posting_starts, self.posting_rows
        total = sum(int(starts[c + 1] - starts[c]) for c in codes)
        if self.kind == STRING and total > n_items // 16:
            # Many matches: one gather over the per-item codes is cheaper than scattering.
            lookup_table = np.zeros(len(self.vocabulary) + 1, dtype=bool)
            lookup_table[codes] = True
            return lookup_table[self.codes]
        hit = np.zeros(n_items, dtype=bool)
        for code in codes:
            hit[rows[starts[code] : starts[code + 1]]] = True
        return hit


class ItemTable:
    """Item attributes as columns aligned with the candidate items (row i = item row i).

    Build it once per catalogue or model version and reuse it for every request: columns are
    encoded on first use (text is dictionary-encoded so IN is one array lookup) and cached.
    Field names are matched case-insensitively. ``schema`` (see :func:`normalize_schema`)
    decides each column's kind; without it the kind is inferred from the values (numbers,
    booleans, text, or lists/tuples for multi-valued fields).
    """

    def __init__(self, columns: Mapping[str, Iterable], schema=None, n_items: int | None = None):
        self._raw = {str(name): column for name, column in columns.items()}
        self._names = {name.lower(): name for name in self._raw}
        self._kinds = {
            lower: kind
            for lower, (_name, kind) in normalize_schema(schema).get("Items", {}).items()
        }
        self._cache: dict[str, _Column] = {}
        if n_items is None:
            lengths = {len(column) for column in self._raw.values()}
            if len(lengths) > 1:
                raise ValueError(
                    f"Item columns have different lengths {sorted(lengths)}; every column must "
                    "have one value per item (None where missing)"
                )
            n_items = lengths.pop() if lengths else 0
        self.n_items = int(n_items)

    @classmethod
    def from_records(cls, records: Iterable[Mapping], schema=None) -> ItemTable:
        """Columns from one attribute dict per item (as stored in the catalogue)."""
        records = list(records)
        names: dict[str, None] = {}
        for record in records:
            names.update(dict.fromkeys(record))
        columns = {}
        for name in names:
            column = np.empty(len(records), dtype=object)
            column[:] = [record.get(name) for record in records]
            columns[name] = column
        return cls(columns, schema=schema, n_items=len(records))

    @property
    def column_names(self) -> list[str]:
        return list(self._raw)

    def has_column(self, name: str) -> bool:
        return name.lower() in self._names

    def column(self, name: str) -> _Column | None:
        lower = name.lower()
        cached = self._cache.get(lower)
        if cached is not None:
            return cached
        if lower not in self._names:
            return None
        real = self._names[lower]
        column = self._encode(real, self._raw[real], self._kinds.get(lower))
        self._cache[lower] = column
        return column

    def _encode(self, name: str, raw, kind: str | None) -> _Column:
        array = _as_array(raw)
        if len(array) != self.n_items:
            raise ValueError(f"Column {name} has {len(array)} values for {self.n_items} items")
        if kind is None:
            kind = _infer_kind(array)
        if kind in (NUMERIC, TIMESTAMP):
            if np.issubdtype(array.dtype, np.datetime64):
                seconds = array.astype("datetime64[s]")
                numbers = seconds.astype(np.int64).astype(np.float64)
                numbers[np.isnat(seconds)] = np.nan
            elif array.dtype.kind in "iufb":
                numbers = array.astype(np.float64)
            else:
                numbers = np.fromiter((_to_number(v) for v in array), np.float64, len(array))
            return _Column(name, kind, numbers=numbers)
        if kind == BOOLEAN:
            if array.dtype == np.bool_:
                flags = array.astype(np.int8)
            else:
                flags = np.fromiter((_to_bool_code(v) for v in array), np.int8, len(array))
            return _Column(name, kind, flags=flags)
        if kind == MULTI:
            return _encode_multi(name, array)
        return _encode_strings(name, array)


def _as_array(raw) -> np.ndarray:
    """A 1-d array of ``raw``; lists inside (multi-valued fields) stay Python objects."""
    if isinstance(raw, np.ndarray) and raw.ndim == 1:
        return raw
    values = list(raw)
    if not any(isinstance(v, list | tuple | set | frozenset | np.ndarray) for v in values):
        array = np.asarray(values)
        if array.ndim == 1:
            return array
    array = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        array[row] = value
    return array


def _infer_kind(array: np.ndarray) -> str:
    if np.issubdtype(array.dtype, np.datetime64):
        return TIMESTAMP
    if array.dtype == np.bool_:
        return BOOLEAN
    if array.dtype.kind in "iuf":
        return NUMERIC
    seen = set()
    for value in array:
        if _is_missing(value):
            continue
        if isinstance(value, bool | np.bool_):
            seen.add(BOOLEAN)
        elif isinstance(value, int | float | np.integer | np.floating):
            seen.add(NUMERIC)
        elif isinstance(value, list | tuple | set | frozenset | np.ndarray):
            return MULTI
        else:
            seen.add(STRING)
    if len(seen) == 1:
        return seen.pop()
    return STRING


def _encode_strings(name: str, array: np.ndarray) -> _Column:
    values = [None if _is_missing(v) else v if isinstance(v, str) else _as_text(v) for v in array]
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    vocabulary = {value: code for code, value in enumerate(uniques)}
    codes = codes.astype(np.int32)
    has_value = codes >= 0
    codes[~has_value] = len(vocabulary)
    rows = np.flatnonzero(has_value)
    posting_rows, posting_starts = _postings(codes[rows], rows, len(vocabulary))
    return _Column(
        name,
        STRING,
        codes=codes,
        vocabulary=vocabulary,
        has_value=has_value,
        posting_rows=posting_rows,
        posting_starts=posting_starts,
    )


def _postings(codes: np.ndarray, rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(codes, kind="stable")
    starts = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=size), out=starts[1:])
    return rows[order], starts


def _encode_multi(name: str, array: np.ndarray) -> _Column:
    vocabulary: dict[str, int] = {}
    flat_codes: list[int] = []
    flat_rows: list[int] = []
    for row, value in enumerate(array):
        if isinstance(value, str):
            parts: Iterable = value.split("|")
        elif isinstance(value, list | tuple | set | frozenset | np.ndarray):
            parts = value
        elif _is_missing(value):
            continue
        else:
            parts = [value]
        for part in parts:
            if _is_missing(part):
                continue
            text = part.strip() if isinstance(part, str) else _as_text(part)
            if not text:
                continue
            flat_codes.append(vocabulary.setdefault(text, len(vocabulary)))
            flat_rows.append(row)
    rows = np.asarray(flat_rows, dtype=np.int64)
    has_value = np.zeros(len(array), dtype=bool)
    has_value[rows] = True
    posting_rows, posting_starts = _postings(
        np.asarray(flat_codes, dtype=np.int64), rows, len(vocabulary)
    )
    return _Column(
        name,
        MULTI,
        vocabulary=vocabulary,
        has_value=has_value,
        posting_rows=posting_rows,
        posting_starts=posting_starts,
    )


# --------------------------------------------------------------------------- user history


@dataclass(frozen=True)
class UserInteractions:
    """The requesting user's events, one element per event.

    ``item_rows`` are rows of the ItemTable (negative for items not in it), ``event_types``
    text, ``timestamps`` epoch seconds, ``event_values`` numbers. Only the arrays a filter's
    Interactions conditions use are needed.
    """

    item_rows: np.ndarray
    event_types: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    event_values: np.ndarray | None = None

    @classmethod
    def coerce(cls, value) -> UserInteractions | None:
        if value is None or isinstance(value, UserInteractions):
            return value
        if isinstance(value, Mapping):
            known = {"item_rows", "event_types", "timestamps", "event_values"}
            unknown = set(value) - known
            if unknown:
                raise ValueError(
                    f"Unknown interaction arrays {sorted(unknown)}; expected {sorted(known)}"
                )
            return cls(**value)
        raise TypeError("interactions must be a UserInteractions or a dict of arrays")


# --------------------------------------------------------------------------- compilation


@dataclass(frozen=True)
class _Plan:
    action: str
    dataset: str  # "Items" or "Interactions"
    condition: Condition
    guard: tuple[Comparison, ...]


def compile_filter(expression: str, schema=None) -> Filter:
    """Parse and check ``expression``; returns a reusable :class:`Filter`.

    With ``schema`` (item and user fields, see :func:`normalize_schema`) unknown fields,
    operators that do not suit a field's type and constants of the wrong type are reported
    now; without it the same checks run against the item table at evaluation time.
    Raises FilterSyntaxError or FilterSemanticError (both FilterError) with the position.
    """
    ast = parse(expression)
    fields = normalize_schema(schema)
    plans = tuple(_plan(statement, fields) for statement in ast.statements)
    return Filter(expression, ast, plans)


def _plan(statement: Statement, fields) -> _Plan:
    for comparison in statement.guard:
        if comparison.field.dataset != "Users":
            raise FilterSemanticError(
                f"After IF only Users fields can be tested; found {comparison.field} at position "
                f"{comparison.field.position}. Move it before IF",
                comparison.field.position,
                ("Users.<field>",),
                str(comparison.field),
            )
    condition = statement.condition
    conjuncts = (
        condition.operands
        if isinstance(condition, BoolOp) and condition.op == "AND"
        else (condition,)
    )
    guard = list(statement.guard)
    rest: list[Condition] = []
    for conjunct in conjuncts:
        if isinstance(conjunct, Comparison) and conjunct.field.dataset == "Users":
            guard.append(conjunct)
        else:
            rest.append(conjunct)
    if not rest:
        raise FilterSemanticError(
            f"The statement at position {statement.position} only tests Users fields, which "
            "decide whether a statement applies; add a condition on Items or Interactions",
            statement.position,
            ("Items.<field>", "Interactions.<field>"),
            statement.action,
        )
    dataset = None
    for node in rest:
        for comparison in iter_comparisons(node):
            current = comparison.field.dataset
            if current == "Users":
                raise FilterSemanticError(
                    f"{comparison.field} at position {comparison.field.position} is combined with "
                    "OR or inside parentheses; a Users condition decides whether the whole "
                    "statement applies, so join it with AND at the top level of WHERE",
                    comparison.field.position,
                    ("Items.<field>", "Interactions.<field>"),
                    str(comparison.field),
                )
            if dataset is None:
                dataset = current
            elif current != dataset:
                raise FilterSemanticError(
                    f"{comparison.field} at position {comparison.field.position} mixes "
                    f"{current} with {dataset} conditions in one statement; write a separate "
                    f'statement and join them with "|"',
                    comparison.field.position,
                    (f"{dataset}.<field>", "|"),
                    str(comparison.field),
                )
    for comparison in [*guard, *(c for node in rest for c in iter_comparisons(node))]:
        _check_comparison(comparison, fields)
    combined = rest[0] if len(rest) == 1 else BoolOp("AND", tuple(rest))
    return _Plan(statement.action, dataset, combined, tuple(guard))


def _field_kind(target: Field, fields) -> str | None:
    """The kind of ``target``; None when unknown until evaluation. Raises on unknown fields."""
    if target.dataset == "Interactions":
        known = INTERACTION_FIELDS.get(target.name.lower())
        if known is None:
            raise FilterSemanticError(
                f"Unknown field {target} at position {target.position}; Interactions has "
                '"EVENT_TYPE", "EVENT_VALUE" and "TIMESTAMP"',
                target.position,
                tuple(name for name, _kind in INTERACTION_FIELDS.values()),
                target.name,
            )
        return known[1]
    if target.dataset not in fields:
        return None  # no schema for this dataset: checked against the data at evaluation
    known = fields[target.dataset].get(target.name.lower())
    if known is None:
        names = [name for name, _kind in fields[target.dataset].values()]
        raise _unknown_field(target, names)
    return known[1]


def _unknown_field(target: Field, names: list[str]) -> FilterSemanticError:
    shown = ", ".join(f'"{n}"' for n in names[:30]) + (" ..." if len(names) > 30 else "")
    where = "the catalogue" if target.dataset == "Items" else "the users dataset"
    return FilterSemanticError(
        f"Unknown field {target} at position {target.position}; "
        + (f"{where} has {shown}" if names else f"{where} has no attribute fields"),
        target.position,
        tuple(names),
        target.name,
    )


def _check_comparison(comparison: Comparison, fields) -> None:
    kind = _field_kind(comparison.field, fields)
    for value in comparison.values:
        if (
            isinstance(value, CurrentItemRef)
            and "Items" in fields
            and value.name.lower() not in fields["Items"]
        ):
            names = [name for name, _kind in fields["Items"].values()]
            raise _unknown_field(Field("Items", value.name, value.position), names)
    if kind is None:
        return
    _check_operator(comparison, kind)
    for value in comparison.values:
        if isinstance(value, Literal):
            _coerce(value, kind, comparison)


def _check_operator(comparison: Comparison, kind: str) -> None:
    if comparison.op in ORDERING_OPERATORS and kind not in (NUMERIC, TIMESTAMP):
        raise FilterSemanticError(
            f'"{comparison.op}" needs a numeric field, but {comparison.field} holds '
            f"{KIND_WORDS[kind]} (position {comparison.position}); use IN, NOT IN, = or !=",
            comparison.position,
            ("IN", "NOT IN", "=", "!="),
            comparison.op,
        )


def _coerce(literal: Literal, kind: str, comparison: Comparison):
    """``literal`` as a value comparable with a field of ``kind``; raises if it cannot be."""
    value = literal.value
    if kind in (NUMERIC, TIMESTAMP):
        if literal.kind == "number":
            return float(value)
        if literal.kind == "string":
            number = _to_number(value) if kind == TIMESTAMP else _plain_number(value)
            if not math.isnan(number):
                return number
        wanted = "a number or an ISO date" if kind == TIMESTAMP else "a number"
        raise _value_error(literal, comparison, wanted)
    if kind == BOOLEAN:
        code = _to_bool_code(value)
        if code < 0:
            raise _value_error(literal, comparison, "true or false")
        return bool(code)
    if literal.kind == "boolean":
        return ("true", "True", "TRUE") if value else ("false", "False", "FALSE")
    return _as_text(value)


def _plain_number(text: str) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        return math.nan


def _value_error(literal: Literal, comparison: Comparison, wanted: str) -> FilterError:
    shown = f'"{literal.value}"' if literal.kind == "string" else str(literal.value).lower()
    if literal.parameter:
        return FilterParameterError(
            f"Parameter ${literal.parameter} is {shown}, but {comparison.field} needs {wanted} "
            f"(position {literal.position})",
            literal.position,
            (wanted,),
            str(literal.value),
        )
    return FilterSemanticError(
        f"{comparison.field} needs {wanted}; found {shown} at position {literal.position}",
        literal.position,
        (wanted,),
        str(literal.value),
    )


# --------------------------------------------------------------------------- evaluation


class _Context:
    """Everything one ``mask`` call needs, with per-request caches."""

    def __init__(self, table, events, user, current_item, values):
        self.table = table
        self.events = events
        self.user = user
        self.current_item = current_item
        self.values = values or {}
        self._event_cache: dict[str, np.ndarray] = {}
        self.parameters: dict[tuple[int, str], tuple[Literal, ...]] = {}

    def literals(self, comparison: Comparison) -> tuple[list[Literal], bool]:
        """The constants on the right of ``comparison``; flag: a CurrentItem value is missing."""
        result: list[Literal] = []
        missing = False
        for value in comparison.values:
            if isinstance(value, Literal):
                result.append(value)
            elif isinstance(value, Param):
                bound = self.parameters.get((id(comparison), value.name))
                if bound is None:
                    bound = resolve_parameter(comparison, value, self.values)
                result.extend(bound)
            else:
                found = self.current_value(value)
                missing = missing or not found
                result.extend(found)
        if comparison.op not in IN_OPERATORS and len(result) > 1:
            raise FilterParameterError(
                f"{comparison.field} {comparison.op} needs one value but CurrentItem has "
                f"{len(result)} (position {comparison.position}); use IN instead",
                comparison.position,
                ("IN",),
                comparison.op,
            )
        return result, missing

    def current_value(self, ref: CurrentItemRef) -> list[Literal]:
        if self.current_item is None:
            raise FilterParameterError(
                f"{CURRENT_ITEM}.{ref.name} at position {ref.position} is only available when "
                "recommending items related to an item; use this filter for related items",
                ref.position,
                (),
                f"{CURRENT_ITEM}.{ref.name}",
            )
        try:
            raw = lookup(self.current_item, ref.name)
        except KeyError:
            return []
        if isinstance(raw, list | tuple | set | frozenset | np.ndarray):
            items = list(raw)
        elif isinstance(raw, str) and "|" in raw:
            items = [part.strip() for part in raw.split("|")]
        else:
            items = [raw]
        literals = []
        for item in items:
            if _is_missing(item):
                continue
            if isinstance(item, bool | np.bool_):
                literals.append(Literal("boolean", bool(item), ref.position))
            elif isinstance(item, int | float | np.integer | np.floating):
                number = item.item() if hasattr(item, "item") else item
                literals.append(Literal("number", number, ref.position))
            else:
                literals.append(Literal("string", str(item), ref.position))
        return literals

    def event_array(self, name: str) -> np.ndarray:
        cached = self._event_cache.get(name)
        if cached is not None:
            return cached
        events = self.events
        size = len(events.item_rows)
        if name == "event_type":
            raw = events.event_types
            if raw is None:
                array = np.full(size, "", dtype=object)
            else:
                array = np.array(
                    ["" if _is_missing(v) else str(v).lower() for v in raw], dtype=object
                )
        else:
            raw = events.event_values if name == "event_value" else events.timestamps
            if raw is None:
                array = np.full(size, np.nan)
            else:
                array = np.asarray(raw)
                if np.issubdtype(array.dtype, np.datetime64):
                    array = array.astype("datetime64[s]").astype(np.int64).astype(np.float64)
                elif array.dtype.kind in "iufb":
                    array = array.astype(np.float64)
                else:
                    array = np.fromiter((_to_number(v) for v in array), np.float64, len(array))
        self._event_cache[name] = array
        return array


class Filter:
    """A compiled filter expression. Immutable and safe to share between requests.

    ``parameters`` lists the ``$NAME`` placeholders a request must fill; ``uses_interactions``,
    ``uses_users`` and ``uses_current_item`` say which request data :meth:`mask` will read.
    """

    def __init__(self, expression: str, ast: FilterExpression, plans: tuple[_Plan, ...]):
        self.expression = expression
        self.ast = ast
        self._plans = plans
        self.parameters = ast.parameters()
        comparisons = ast.comparisons()
        self.uses_interactions = any(p.dataset == "Interactions" for p in plans)
        self.uses_users = any(p.guard for p in plans)
        self._current_item_refs = [
            v for c in comparisons for v in c.values if isinstance(v, CurrentItemRef)
        ]
        self.uses_current_item = bool(self._current_item_refs)
        self._parameter_uses = [
            (c, v) for c in comparisons for v in c.values if isinstance(v, Param)
        ]

    def __repr__(self) -> str:
        return f"Filter({render(self.ast)!r})"

    def mask(
        self,
        items: ItemTable | Mapping[str, Iterable],
        *,
        interactions: UserInteractions | Mapping | None = None,
        user: Mapping | None = None,
        current_item: Mapping | None = None,
        values: Mapping[str, object] | None = None,
        only_if_included: bool = False,
    ) -> np.ndarray:
        """Boolean array over the items of ``items``: True = the item may be recommended.

        ``interactions`` are the requesting user's events (None: no history), ``user`` their
        attributes, ``current_item`` the source item's attributes for related-items requests,
        ``values`` the ``$NAME`` parameter values (``filter_values``). Raises FilterError
        (FilterParameterError, FilterSemanticError) with a position when the request cannot be
        evaluated.

        ``only_if_included`` is for promotions, which pick items rather than remove them: when
        the expression has INCLUDE statements and every one is skipped for this user (their
        ``Users`` conditions do not hold), nothing matches, instead of every item.
        """
        table = items if isinstance(items, ItemTable) else ItemTable(items)
        events = UserInteractions.coerce(interactions)
        context = _Context(table, events, user, current_item, values)
        # Report missing request data even when the statement needing it would be skipped,
        # so the same request always gets the same answer.
        for comparison, param in self._parameter_uses:
            context.parameters[id(comparison), param.name] = resolve_parameter(
                comparison, param, context.values
            )
        if self._current_item_refs and current_item is None:
            context.current_value(self._current_item_refs[0])  # raises
        n = table.n_items
        included: np.ndarray | None = None
        excluded = np.zeros(n, dtype=bool)
        for plan in self._plans:
            if plan.guard and not all(_user_matches(c, context) for c in plan.guard):
                continue
            if plan.dataset == "Items":
                matched = _items_condition(plan.condition, context)
            else:
                matched = _interactions_condition(plan.condition, context, n)
            if plan.action == INCLUDE:
                included = matched if included is None else np.logical_or(included, matched)
            else:
                np.logical_or(excluded, matched, out=excluded)
        if included is None:
            if only_if_included and any(plan.action == INCLUDE for plan in self._plans):
                return np.zeros(n, dtype=bool)
            return ~excluded
        return np.logical_and(included, ~excluded)


# ---- Items


def _items_condition(node: Condition, context: _Context) -> np.ndarray:
    if isinstance(node, Comparison):
        return _items_comparison(node, context)
    result = _items_condition(node.operands[0], context)
    combine = np.logical_and if node.op == "AND" else np.logical_or
    for operand in node.operands[1:]:
        combine(result, _items_condition(operand, context), out=result)
    return result


def _items_comparison(comparison: Comparison, context: _Context) -> np.ndarray:
    table = context.table
    column = table.column(comparison.field.name)
    if column is None:
        raise _unknown_field(comparison.field, table.column_names)
    _check_operator(comparison, column.kind)
    literals, missing_current = context.literals(comparison)
    n = table.n_items
    if missing_current and comparison.op != "IN":
        return np.zeros(n, dtype=bool)
    wanted = _flatten(_coerce(literal, column.kind, comparison) for literal in literals)
    op = comparison.op
    if column.kind in (NUMERIC, TIMESTAMP):
        return _compare_numbers(column.numbers, op, wanted)
    if column.kind == BOOLEAN:
        targets = {bool(v) for v in wanted}
        if len(targets) == 2:
            hit = column.flags >= 0
        elif targets:
            hit = column.flags == int(targets.pop())
        else:
            hit = np.zeros(n, dtype=bool)
        if op in ("IN", "="):
            return hit
        return np.logical_and(~hit, column.flags >= 0)
    # STRING and MULTI (an item with several values matches IN / = when any of them is listed)
    codes = sorted({column.vocabulary[v] for v in wanted if v in column.vocabulary})
    hit = column.rows_with(codes, n)
    if op in ("IN", "="):
        return hit
    return np.logical_and(~hit, column.has_value)


def _flatten(values: Iterable) -> list:
    flat: list = []
    for value in values:
        if isinstance(value, tuple):
            flat.extend(value)
        else:
            flat.append(value)
    return flat


def _compare_numbers(numbers: np.ndarray, op: str, wanted: list) -> np.ndarray:
    if op in IN_OPERATORS:
        if len(wanted) <= 8:
            hit = np.zeros(len(numbers), dtype=bool)
            for value in wanted:
                np.logical_or(hit, numbers == value, out=hit)
        else:
            hit = np.isin(numbers, wanted)
        return hit if op == "IN" else np.logical_and(~hit, ~np.isnan(numbers))
    if not wanted:
        return np.zeros(len(numbers), dtype=bool)
    target = wanted[0]
    if op == "=":
        return numbers == target
    if op == "!=":
        return np.logical_and(numbers != target, ~np.isnan(numbers))
    if op == "<":
        return numbers < target
    if op == "<=":
        return numbers <= target
    if op == ">":
        return numbers > target
    return numbers >= target


# ---- Interactions


def _interactions_condition(node: Condition, context: _Context, n_items: int) -> np.ndarray:
    matched = np.zeros(n_items, dtype=bool)
    events = context.events
    if events is None or len(events.item_rows) == 0:
        return matched
    rows = _event_rows(node, context)
    item_rows = np.asarray(events.item_rows)[rows]
    item_rows = item_rows[(item_rows >= 0) & (item_rows < n_items)]
    matched[item_rows] = True
    return matched


def _event_rows(node: Condition, context: _Context) -> np.ndarray:
    if isinstance(node, BoolOp):
        result = _event_rows(node.operands[0], context)
        combine = np.logical_and if node.op == "AND" else np.logical_or
        for operand in node.operands[1:]:
            combine(result, _event_rows(operand, context), out=result)
        return result
    name, kind = INTERACTION_FIELDS[node.field.name.lower()]
    literals, missing_current = context.literals(node)
    array = context.event_array(name.lower())
    if missing_current and node.op != "IN":
        return np.zeros(len(array), dtype=bool)
    if kind == STRING:
        wanted = {str(v).lower() for v in _flatten(_coerce(lit, kind, node) for lit in literals)}
        present = array != ""
        if ANY_EVENT in wanted:
            hit = np.ones(len(array), dtype=bool)
        else:
            hit = np.isin(array, list(wanted)) if wanted else np.zeros(len(array), dtype=bool)
        if node.op in ("IN", "="):
            return np.logical_and(hit, present) if ANY_EVENT not in wanted else hit
        return np.logical_and(~hit, present)
    wanted = [_coerce(lit, kind, node) for lit in literals]
    return _compare_numbers(array, node.op, wanted)


# ---- Users


def _user_matches(comparison: Comparison, context: _Context) -> bool:
    """Whether the requesting user satisfies ``comparison`` (missing values never do)."""
    user = context.user
    if not user:
        return False
    try:
        raw = lookup(user, comparison.field.name)
    except KeyError:
        return False
    literals, missing_current = context.literals(comparison)
    if missing_current and comparison.op != "IN":
        return False
    if isinstance(raw, list | tuple | set | frozenset):
        have = {_as_text(v) for v in raw if not _is_missing(v)}
        if not have:
            return False
        _check_operator(comparison, MULTI)
        wanted = set(_flatten(_coerce(lit, STRING, comparison) for lit in literals))
        hit = bool(have & wanted)
        return hit if comparison.op in ("IN", "=") else not hit
    if _is_missing(raw):
        return False
    if isinstance(raw, bool | np.bool_):
        kind = BOOLEAN
    elif isinstance(raw, int | float | np.integer | np.floating) or (
        comparison.op in ORDERING_OPERATORS and not math.isnan(_to_number(raw))
    ):
        kind = NUMERIC
    else:
        kind = STRING
    _check_operator(comparison, kind)
    wanted = _flatten(_coerce(lit, kind, comparison) for lit in literals)
    if kind == NUMERIC:
        mine = np.asarray([_to_number(raw)])
        return bool(_compare_numbers(mine, comparison.op, wanted)[0])
    mine_value = bool(raw) if kind == BOOLEAN else _as_text(raw)
    hit = mine_value in wanted
    return hit if comparison.op in ("IN", "=") else not hit
