"""Guess which schema field each CSV column is, and the type of new attribute columns.

Django-free. Guesses are only suggestions shown in the mapping step of the wizard.
"""

from __future__ import annotations

import re

from datasets.ingest.schema import KINDS_WITH_ATTRIBUTES, RESERVED_FIELDS, Field
from datasets.ingest.sniff import normalise_name

IGNORE = ""
SYNONYMS = {
    "USER_ID": {"USER", "USERID", "USER_ID", "CUSTOMER", "CUSTOMER_ID", "VISITOR_ID", "UID"},
    "ITEM_ID": {"ITEM", "ITEMID", "ITEM_ID", "PRODUCT", "PRODUCT_ID", "SKU", "ARTICLE_ID", "IID"},
    "TIMESTAMP": {"TIMESTAMP", "TIME", "TS", "DATE", "DATETIME", "EVENT_TIME", "CREATED_AT"},
    "EVENT_TYPE": {"EVENT_TYPE", "EVENT", "ACTION", "BEHAVIOR", "BEHAVIOUR", "TYPE"},
    "EVENT_VALUE": {"EVENT_VALUE", "VALUE", "RATING", "AMOUNT", "REVENUE"},
    "IMPRESSION": {"IMPRESSION", "IMPRESSIONS", "SHOWN", "SHOWN_ITEMS"},
    "SESSION_ID": {"SESSION_ID", "SESSION", "ORDER_ID", "BASKET_ID"},
    "RECOMMENDATION_ID": {"RECOMMENDATION_ID", "REC_ID"},
    "CREATION_TIMESTAMP": {"CREATION_TIMESTAMP", "CREATED", "CREATED_AT", "PUBLISHED_AT"},
    "FOLLOWER_ID": {"FOLLOWER_ID", "FOLLOWER", "SOURCE", "FROM", "FROM_ID", "SRC"},
    "FOLLOWEE_ID": {"FOLLOWEE_ID", "FOLLOWEE", "TARGET", "TO", "TO_ID", "DST", "FOLLOWING"},
    "WEIGHT": {"WEIGHT", "STRENGTH"},
}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_BOOLEANS = {"true", "false", "t", "f", "yes", "no", "y", "n", "0", "1"}
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def infer_type(name: str, values: list[str]) -> Field:
    """A typed attribute field for a column, from its name and sample values."""
    field_name = normalise_name(name) or "FIELD"
    if field_name[0].isdigit():
        field_name = f"F_{field_name}"
    present = [v.strip() for v in values if v and v.strip()]
    if not present:
        return Field(field_name, "categorical")
    lowered = {v.lower() for v in present}
    # Columns of only 0/1 are numeric more often than not (counts, flags used as weights).
    if lowered <= _BOOLEANS and not lowered <= {"0", "1"}:
        return Field(field_name, "boolean")
    if all(_ISO_DATE.match(v) for v in present):
        return Field(field_name, "timestamp")
    if all(_NUMBER.match(v) for v in present):
        return Field(field_name, "numeric")
    if any("|" in v for v in present) and all(len(v) < 200 for v in present):
        return Field(field_name, "categorical", multi=True)
    average_words = sum(len(v.split()) for v in present) / len(present)
    if average_words >= 4 or max(len(v) for v in present) > 100:
        return Field(field_name, "text")
    return Field(field_name, "categorical")


def suggest_mapping(
    kind: str, columns: list[str], preview: list[list[str]], schema: list[Field]
) -> dict[str, str]:
    """column -> schema field name ("" = ignore), from names, synonyms and the schema."""
    reserved = [field.name for field in RESERVED_FIELDS[kind]]
    schema_names = {normalise_name(field.name): field.name for field in schema}
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for index, column in enumerate(columns):
        key = normalise_name(column)
        target = schema_names.get(key)
        if target is None:
            target = next((name for name in reserved if key in SYNONYMS.get(name, {name})), IGNORE)
        if target in taken:
            target = IGNORE
        if target == IGNORE and kind in KINDS_WITH_ATTRIBUTES:
            values = [row[index] for row in preview if index < len(row)]
            target = infer_type(column, values).name
            if target in taken or target in reserved:
                target = IGNORE
        mapping[column] = target
        if target:
            taken.add(target)
    return mapping


def fields_for_mapping(
    kind: str, columns: list[str], preview: list[list[str]], mapping: dict[str, str], schema
) -> list[Field]:
    """The schema extended with inferred fields for newly mapped attribute columns."""
    known = {field.name: field for field in schema}
    fields = list(schema)
    for index, column in enumerate(columns):
        target = mapping.get(column, IGNORE)
        if not target or target in known:
            continue
        values = [row[index] for row in preview if index < len(row)]
        inferred = infer_type(column, values)
        field = Field(target, inferred.type, multi=inferred.multi)
        fields.append(field)
        known[target] = field
    return fields
