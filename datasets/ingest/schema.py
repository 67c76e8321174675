"""Dataset schemas: the typed fields of each dataset kind. Django-free.

Each kind has reserved fields with fixed meaning (USER_ID, ITEM_ID, TIMESTAMP, ...).
Items and users may add their own attribute fields of any type; interactions and
relations have only their reserved fields.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

FIELD_TYPES = ("id", "categorical", "numeric", "boolean", "text", "timestamp")
KINDS = ("interactions", "items", "users", "relations")
MAX_ID_LENGTH = 256
MAX_FIELD_NAME_LENGTH = 64
FIELD_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    multi: bool = False  # categorical with several values joined by "|"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Field:
        return cls(
            name=data["name"],
            type=data["type"],
            required=bool(data.get("required", False)),
            multi=bool(data.get("multi", False)),
        )


RESERVED_FIELDS: dict[str, tuple[Field, ...]] = {
    "interactions": (
        Field("USER_ID", "id", required=True),
        Field("ITEM_ID", "id", required=True),
        Field("TIMESTAMP", "timestamp", required=True),
        Field("EVENT_TYPE", "categorical"),
        Field("EVENT_VALUE", "numeric"),
        Field("IMPRESSION", "categorical", multi=True),
        Field("SESSION_ID", "id"),
        Field("RECOMMENDATION_ID", "id"),
    ),
    "items": (
        Field("ITEM_ID", "id", required=True),
        Field("CREATION_TIMESTAMP", "timestamp"),
    ),
    "users": (Field("USER_ID", "id", required=True),),
    "relations": (
        Field("FOLLOWER_ID", "id", required=True),
        Field("FOLLOWEE_ID", "id", required=True),
        Field("WEIGHT", "numeric"),
        Field("TIMESTAMP", "timestamp"),
    ),
}
# Kinds whose rows carry free attribute fields next to the reserved ones.
KINDS_WITH_ATTRIBUTES = ("items", "users")


class SchemaError(ValueError):
    """A schema that cannot be used, with a message for the person editing it."""


def reserved_names(kind: str) -> tuple[str, ...]:
    return tuple(field.name for field in RESERVED_FIELDS[kind])


def default_schema(kind: str) -> list[Field]:
    return list(RESERVED_FIELDS[kind])


def validate_schema(kind: str, fields: list[Field]) -> list[Field]:
    """Check a schema for ``kind``; return it with reserved fields first. Raises SchemaError."""
    if kind not in KINDS:
        raise SchemaError(f"Unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}.")
    by_name: dict[str, Field] = {}
    for field in fields:
        if not FIELD_NAME_PATTERN.match(field.name) or len(field.name) > MAX_FIELD_NAME_LENGTH:
            raise SchemaError(
                f"Field name {field.name!r} must start with a letter or underscore and use only "
                f"letters, digits and underscores (at most {MAX_FIELD_NAME_LENGTH})."
            )
        if field.type not in FIELD_TYPES:
            raise SchemaError(
                f"Field {field.name} has unknown type {field.type!r}; "
                f"expected one of {', '.join(FIELD_TYPES)}."
            )
        if field.multi and field.type != "categorical":
            raise SchemaError(f"Only categorical fields can be multi-valued ({field.name}).")
        if field.name.upper() in (name.upper() for name in by_name):
            if field.name.upper() in reserved_names(kind):
                raise SchemaError(f"{field.name} is a reserved field; choose another name.")
            raise SchemaError(f"Field {field.name} appears twice.")
        by_name[field.name] = field
    reserved = {field.name: field for field in RESERVED_FIELDS[kind]}
    for name, field in by_name.items():
        if name in reserved and (field.type, field.multi) != (
            reserved[name].type,
            reserved[name].multi,
        ):
            raise SchemaError(f"{name} is a reserved field of type {reserved[name].type}.")
    extras = [f for name, f in by_name.items() if name not in reserved]
    if extras and kind not in KINDS_WITH_ATTRIBUTES:
        names = ", ".join(f.name for f in extras)
        raise SchemaError(f"{kind.capitalize()} have a fixed schema; remove {names}.")
    return list(RESERVED_FIELDS[kind]) + extras


def schema_from_dicts(kind: str, data: list[dict]) -> list[Field]:
    try:
        fields = [Field.from_dict(item) for item in data]
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"Malformed schema field: {exc}") from exc
    return validate_schema(kind, fields)
