"""PutEvents, PutItems and PutUsers of Amazon Personalize Events, on recsite's write path.

The AWS SDK's ``personalize-events`` client (``endpoint_url`` = ``https://<host>/personalize``)
posts to ``/events``, ``/items`` and ``/users``. Each request is checked against the limits of
the service model (``botocore/data/personalize-events/*/service-2.json``: 1 to 10 records,
id lengths, JSON ``properties`` ...), turned into the records of ``/api/v1/events|items|users``
and stored by the same services (``datasets.services``), so the same validation applies and
the next recommendation sees the events at once, as with the native API.

Unlike ``/api/v1/``, which stores the valid records of a batch and lists the rejected ones,
Personalize has no partial success: a batch with any invalid record answers
``InvalidInputException`` (naming the record and the field) and stores nothing.

Mapping (see docs/personalize.md, "Migrating from Amazon Personalize"):

- PutEvents: ``userId`` (else ``sessionId``, so anonymous sessions get real-time
  recommendations by asking with ``userId=<sessionId>``) → ``user_id``; ``itemId`` →
  ``item_id``; ``sentAt`` → ``timestamp``; ``eventType``, ``eventValue``, ``impression``,
  ``recommendationId`` and ``sessionId`` → the fields of the same names. ``eventId``,
  ``properties`` and ``metricAttribution`` are checked and not stored (recsite's interactions
  have only the reserved fields).
- PutItems / PutUsers: ``properties`` (a JSON object in a string, camelCase keys as in
  Personalize) → attributes; a key matches the dataset's schema field with the same letters
  (``numberOfRatings`` → ``NUMBER_OF_RATINGS``), other keys become UPPER_SNAKE_CASE fields like
  the columns of a Personalize export. ``creationTimestamp`` → the item's creation time.
  Values are converted to the schema field's type ("12" for a numeric field, "a|b" for a
  multi-valued categorical one).

The event tracker: each project has one, named EVENT_TRACKER_NAME, whose tracking id is
derived from the project (``tracking_id``) and shown with its ARN on the API keys page. A
tracking id of another project (or none at all) answers ``ResourceNotFoundException``.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid

from django.http import HttpResponse

from datasets import services
from datasets.imports import get_schema
from datasets.ingest import records
from datasets.ingest.schema import Field
from datasets.models import DatasetKind, Project
from feeds.personalize import arns
from feeds.personalize.errors import InvalidInput, ResourceNotFound
from feeds.personalize.runtime import PersonalizeView

# Limits of the service model (personalize-events 2018-03-22).
MAX_RECORDS = 10  # EventList, ItemList, UserList
MAX_IMPRESSION = 25
MAX_STRING = 256  # StringType, UserId, ItemId
MAX_RECOMMENDATION_ID = 40
MAX_EVENT_PROPERTIES = 1024
MAX_ITEM_PROPERTIES = 32_000
MAX_USER_PROPERTIES = 24_000
MAX_ATTRIBUTION_SOURCE = 1024
_ATTRIBUTION_SOURCE = re.compile(r"^[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*$")

EVENT_TRACKER_NAME = "default"
_TRACKER_NAMESPACE = uuid.UUID("6f1d3b0e-5a43-4c8e-9d2b-7a3f2e8c1b55")

PUT_EVENTS_FIELDS = ("trackingId", "userId", "sessionId", "eventList")
EVENT_FIELDS = (
    "eventId",
    "eventType",
    "eventValue",
    "itemId",
    "properties",
    "sentAt",
    "recommendationId",
    "impression",
    "metricAttribution",
)
PUT_ITEMS_FIELDS = ("datasetArn", "items")
PUT_USERS_FIELDS = ("datasetArn", "users")

# recsite's record fields -> the parameter names a Personalize client sent.
_EVENT_FIELDS = {
    "user_id": "userId",
    "item_id": "itemId",
    "event_type": "eventType",
    "timestamp": "sentAt",
    "event_value": "eventValue",
    "impression": "impression",
    "session_id": "sessionId",
    "recommendation_id": "recommendationId",
}


# --- the event tracker ------------------------------------------------------------------


def tracking_id(project: Project) -> str:
    """The tracking id of ``project``'s event tracker (stable, derived from the project)."""
    return str(uuid.uuid5(_TRACKER_NAMESPACE, f"recsite-event-tracker/{project.pk}/{project.slug}"))


def event_tracker_arn(project: Project) -> str:
    return arns.arn_for("event-tracker", project, EVENT_TRACKER_NAME)


def dataset_arn(project: Project, kind: str) -> str:
    """The ARN of a dataset: ``...:dataset/<kind>`` (interactions, items, users, relations)."""
    return arns.arn_for("dataset", project, kind)


# --- shapes of the service model ----------------------------------------------------------


def _obj(value, where: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object.")
    unknown = sorted(str(name) for name in value if name not in allowed)
    if unknown:
        raise InvalidInput(
            f"{where} has no parameter {', '.join(unknown)[:200]}; it takes {', '.join(allowed)}."
        )
    return value


def _string(body: dict, name: str, where: str, *, required=False, max_length=MAX_STRING):
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{where}{name} is required.")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}{name} must be a string.")
    if not 1 <= len(value) <= max_length:
        raise InvalidInput(
            f"{where}{name} must be 1 to {max_length} characters long (got {len(value)})."
        )
    return value


def _list(body: dict, name: str, *, noun: str, maximum: int = MAX_RECORDS) -> list:
    value = body.get(name)
    if value is None:
        raise InvalidInput(f"{name} is required: a list of 1 to {maximum} {noun}.")
    if not isinstance(value, list):
        raise InvalidInput(f"{name} must be a list of 1 to {maximum} {noun}.")
    if not 1 <= len(value) <= maximum:
        raise InvalidInput(
            f"{name} must hold 1 to {maximum} {noun} (got {len(value)}); "
            f"send more in several requests."
        )
    return value


def _properties(record: dict, where: str, max_length: int) -> dict:
    """The ``properties`` string of a record parsed as a JSON object ({} when absent)."""
    text = _string(record, "properties", where, max_length=max_length)
    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{where}properties is not valid JSON ({exc.msg} at character {exc.pos}); send a "
            'JSON object in a string, such as "{\\"numberOfRatings\\": 12}".'
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidInput(
            f'{where}properties must be a JSON object such as "{{\\"genres\\": \\"a|b\\"}}", '
            f"not a JSON {type(parsed).__name__}."
        )
    return parsed


def _first_rejection(rejected: list[dict], where, names: dict, keys=None) -> InvalidInput:
    """The InvalidInput for the first record recsite's validation refused. ``keys`` (one dict
    per record: attribute name -> the property key sent) names properties as they were sent."""
    first = rejected[0]
    field, problems = next(iter(first["errors"].items()))
    name = names.get(field, field)
    problem = problems[0].rstrip(".")
    attribute, colon, rest = problem.partition(": ")
    sent = (keys[first["index"]] if keys else {}).get(attribute)
    if colon and sent and sent != attribute:
        problem = f"{sent} (the {attribute} field): {rest}"
    others = len(rejected) - 1
    more = f"; {others} more record{'s' if others > 1 else ''} invalid too" if others else ""
    return InvalidInput(f"{where(first['index'])}{name}: {problem}. Nothing was stored{more}.")


# --- PutEvents ----------------------------------------------------------------------------


def put_events(project: Project, body) -> int:
    """Store the events of a PutEvents request; returns how many. InvalidInput or
    ResourceNotFound (tracking id) when anything is wrong, with nothing stored."""
    body = _obj(body, "PutEvents", PUT_EVENTS_FIELDS)
    tracker = _string(body, "trackingId", "", required=True)
    session_id = _string(body, "sessionId", "", required=True)
    user_id = _string(body, "userId", "")
    events = _list(body, "eventList", noun="events")
    if tracker != tracking_id(project):
        raise ResourceNotFound(
            f"No event tracker with tracking id “{tracker[:80]}” in the project of this access "
            "key. Copy the tracking id from the project's API keys page in recsite."
        )
    converted = [
        _event(event, f"eventList[{i}].", user_id or session_id, session_id)
        for i, event in enumerate(events)
    ]
    names = dict(_EVENT_FIELDS)
    if not user_id:
        names["user_id"] = "sessionId (the user of an event without userId)"
    _, rejections = records.validate_events(converted, now=int(time.time()))
    if rejections.items:
        raise _first_rejection(rejections.items, lambda i: f"eventList[{i}].", names)
    result = services.record_events(project=project, events=converted)
    return result.accepted


def _event(event, where: str, user_id: str, session_id: str) -> dict:
    event = _obj(event, where.rstrip("."), EVENT_FIELDS)
    _string(event, "eventId", where)
    event_type = _string(event, "eventType", where, required=True)
    sent_at = event.get("sentAt")
    if sent_at is None:
        raise InvalidInput(f"{where}sentAt is required (epoch seconds).")
    item_id = _string(event, "itemId", where)
    if item_id is None:
        raise InvalidInput(
            f"{where}itemId is required by recsite: it records item interactions only "
            "(an event without an item cannot be learned from)."
        )
    value = event.get("eventValue")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise InvalidInput(f"{where}eventValue must be a number.")
    recommendation_id = _string(event, "recommendationId", where, max_length=MAX_RECOMMENDATION_ID)
    impression = event.get("impression")
    if impression is not None:
        if not isinstance(impression, list) or not 1 <= len(impression) <= MAX_IMPRESSION:
            raise InvalidInput(
                f"{where}impression must be a list of 1 to {MAX_IMPRESSION} item ids."
            )
        for position in range(len(impression)):
            _string({"id": impression[position]}, "id", f"{where}impression[{position}] ")
    _properties(event, where, MAX_EVENT_PROPERTIES)
    attribution = event.get("metricAttribution")
    if attribution is not None:
        attribution = _obj(attribution, f"{where}metricAttribution", ("eventAttributionSource",))
        source = _string(
            attribution,
            "eventAttributionSource",
            f"{where}metricAttribution.",
            required=True,
            max_length=MAX_ATTRIBUTION_SOURCE,
        )
        if not _ATTRIBUTION_SOURCE.match(source):
            raise InvalidInput(
                f"{where}metricAttribution.eventAttributionSource must be printable ASCII "
                "text that is not only spaces."
            )
    return {
        "user_id": user_id,
        "item_id": item_id,
        "event_type": event_type,
        "timestamp": sent_at,
        "event_value": value,
        "session_id": session_id,
        "recommendation_id": recommendation_id,
        "impression": impression,
    }


# --- PutItems / PutUsers ------------------------------------------------------------------


def put_items(project: Project, body) -> int:
    """Add or replace the items of a PutItems request; returns how many."""
    body = _obj(body, "PutItems", PUT_ITEMS_FIELDS)
    _check_dataset(project, body, DatasetKind.ITEMS)
    converted, keys = _catalog_records(
        project, body, DatasetKind.ITEMS, "items", "itemId", "item_id", MAX_ITEM_PROPERTIES
    )
    for record in converted:
        record["creation_timestamp"] = record["properties"].pop(_CREATION, None)
    names = {"item_id": "itemId", "properties": "properties", "creation_timestamp": _CREATION_KEY}
    _, rejections = records.validate_items(converted)
    if rejections.items:
        raise _first_rejection(rejections.items, lambda i: f"items[{i}].", names, keys)
    return services.upsert_items(project=project, items=converted).accepted


def put_users(project: Project, body) -> int:
    """Add or replace the users of a PutUsers request; returns how many."""
    body = _obj(body, "PutUsers", PUT_USERS_FIELDS)
    _check_dataset(project, body, DatasetKind.USERS)
    converted, keys = _catalog_records(
        project, body, DatasetKind.USERS, "users", "userId", "user_id", MAX_USER_PROPERTIES
    )
    _, rejections = records.validate_users(converted)
    if rejections.items:
        raise _first_rejection(
            rejections.items, lambda i: f"users[{i}].", {"user_id": "userId"}, keys
        )
    return services.upsert_end_users(project=project, users=converted).accepted


def _catalog_records(project, body, kind, list_key, id_key, record_id_key, max_properties):
    """The ``list_key`` records of a PutItems/PutUsers body as recsite's write records
    (``{record_id_key: id, "properties": attributes}``), and per record the property keys as
    sent (for error messages)."""
    fields = get_schema(project, kind)
    converted, keys = [], []
    for i, record in enumerate(_list(body, list_key, noun=list_key)):
        where = f"{list_key}[{i}]."
        record = _obj(record, f"{list_key}[{i}]", (id_key, "properties"))
        record_id = _string(record, id_key, where, required=True)
        attributes, sent_keys = _attributes(
            _properties(record, where, max_properties), fields, f"{where}properties."
        )
        keys.append(sent_keys)
        converted.append({record_id_key: record_id, "properties": attributes})
    return converted, keys


def _check_dataset(project: Project, body: dict, kind: str) -> None:
    arn = body.get("datasetArn")
    if arn is None:
        raise InvalidInput(
            f"datasetArn is required: the ARN of the {kind} dataset, {dataset_arn(project, kind)}."
        )
    parsed = arns.resolve_arn(arn, project, "dataset", "datasetArn")
    if parsed.name.lower() not in DatasetKind.values:
        raise ResourceNotFound(arns.not_found_message("dataset", arn))
    if parsed.name.lower() != kind:
        raise InvalidInput(
            f"datasetArn names the {parsed.name} dataset; this operation writes the {kind} "
            f"dataset: {dataset_arn(project, kind)}."
        )


_CREATION = "CREATION_TIMESTAMP"
_CREATION_KEY = "properties.creationTimestamp"


def _letters(name: str) -> str:
    return name.replace("_", "").lower()


def _upper_snake(name: str) -> str:
    """numberOfRatings -> NUMBER_OF_RATINGS (Personalize's camelCase keys to schema names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _attributes(properties: dict, fields: list[Field], where: str) -> tuple[dict, dict]:
    """Personalize properties as recsite attributes named and typed like the schema's fields,
    and the key each attribute was sent as."""
    by_letters = {_letters(f.name): f for f in fields}
    attributes, sent_keys = {}, {}
    for key, value in properties.items():
        field = by_letters.get(_letters(str(key)))
        name = field.name if field is not None else _upper_snake(str(key))
        if name in attributes:
            raise InvalidInput(f"{where}{key} repeats the property {name}.")
        if name in ("ITEM_ID", "USER_ID"):
            raise InvalidInput(f"{where}{key}: the id is given by itemId / userId, not here.")
        attributes[name] = _typed(value, field)
        sent_keys[name] = str(key)
    return attributes, sent_keys


def _typed(value, field: Field | None):
    """``value`` converted to the schema field's type where it comes as text (as Personalize
    clients often send numbers); anything that does not convert is left for validation."""
    if field is None or not isinstance(value, str):
        return value
    text = value.strip()
    if field.type == "categorical" and field.multi:
        return [part.strip() for part in text.split("|") if part.strip()]
    if field.type == "numeric":
        try:
            number = float(text)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if field.type == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if field.type == "timestamp":
        try:
            return records.clean_timestamp(text)
        except records.Invalid:
            return value
    return value


# --- views ------------------------------------------------------------------------------


def _ok() -> HttpResponse:
    """The success answer of the three operations: HTTP 200 with no body (no output shape)."""
    return HttpResponse(status=200, content_type="application/json")


class PutEventsView(PersonalizeView):
    def post(self, request):
        put_events(request.auth.project, self.body(request))
        return _ok()


class PutItemsView(PersonalizeView):
    def post(self, request):
        put_items(request.auth.project, self.body(request))
        return _ok()


class PutUsersView(PersonalizeView):
    def post(self, request):
        put_users(request.auth.project, self.body(request))
        return _ok()
