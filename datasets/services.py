"""Writes for projects, memberships, API keys and the write API's records."""

import hashlib
import math
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from datasets import store
from datasets.ingest import records
from datasets.models import ApiKey, EndUser, Membership, Project


def unique_project_slug(name: str) -> str:
    base = slugify(name)[:50] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_project(*, name: str, owner, description: str = "", slug: str = "") -> Project:
    """Create a project with ``owner`` as its first member."""
    project = Project.objects.create(
        name=name.strip(),
        slug=slug or unique_project_slug(name),
        description=description.strip(),
    )
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    return project


def add_member(*, project: Project, user, role: str = Membership.Role.EDITOR) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


# --- API keys ---------------------------------------------------------------------------

# rs_<8 lowercase letters/digits>_<secret>: the first part is stored (shown in the UI and
# used to find the key), the whole key only as a SHA-256.
API_KEY_PATTERN = re.compile(r"^(rs_[a-z0-9]{8})_[A-Za-z0-9_-]{32,}$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# How stale ApiKey.last_used_at may get: writing it on every request would add a write
# (and row lock contention between workers) to every event batch.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_prefix(plaintext: str) -> str | None:
    """The stored prefix of a well-formed key, None for anything else."""
    match = API_KEY_PATTERN.match(plaintext)
    return match.group(1) if match else None


def create_api_key(*, project: Project, name: str, created_by=None) -> tuple[ApiKey, str]:
    """A new key for ``project``; the plaintext is returned here once and never stored."""
    prefix = "rs_" + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        project=project,
        name=name.strip(),
        prefix=prefix,
        key_hash=hash_api_key(plaintext),
        created_by=created_by,
    )
    return api_key, plaintext


def revoke_api_key(*, api_key: ApiKey) -> ApiKey:
    """Stop accepting ``api_key`` from the next request on (revoking twice changes nothing)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def record_api_key_use(*, api_key: ApiKey) -> None:
    """Stamp ``last_used_at``, at most once per LAST_USED_RESOLUTION for each key."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    # The condition makes concurrent workers race for one update instead of each writing.
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


# --- write API --------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    accepted: int
    rejected: list[dict]  # [{"index": i, "errors": {field: [message]}}]


def record_events(*, project: Project, events: list) -> WriteResult:
    """Validate a batch of events and store the valid ones in one transaction.

    Unknown users and items are created (outside the catalog) so events may arrive before
    the catalog does.
    """
    valid, rejections = records.validate_events(events, now=int(time.time()))
    if valid:
        with transaction.atomic():
            # Sorted, so concurrent batches take the unique-index locks of new ids in the
            # same order and cannot deadlock each other.
            user_rows = store.ensure_ids(store.USER_TABLE, project.pk, sorted(set(valid.user_ids)))
            item_rows = store.ensure_ids(store.ITEM_TABLE, project.pk, sorted(set(valid.item_ids)))
            rows = pd.DataFrame(
                {
                    "user_id": [user_rows[user_id] for user_id in valid.user_ids],
                    "item_id": [item_rows[item_id] for item_id in valid.item_ids],
                    "timestamp": valid.timestamps,
                    "event_type": valid.event_types,
                    "event_value": [math.nan if v is None else v for v in valid.event_values],
                    "impression": valid.impressions,
                    "session_id": valid.session_ids,
                    "recommendation_id": valid.recommendation_ids,
                }
            )
            store.insert_interactions(project.pk, rows)
    return WriteResult(accepted=len(valid), rejected=rejections.items)


def upsert_end_users(*, project: Project, users: list) -> WriteResult:
    """Insert or replace users (id and attributes), marking them as in the catalog."""
    valid, rejections = records.validate_users(users)
    _keep_saved_segments(project, valid)
    _upsert_catalog(store.USER_TABLE, project, valid)
    return WriteResult(accepted=len(valid), rejected=rejections.items)


def _keep_saved_segments(project: Project, valid) -> None:
    """A user written again keeps the segment fields saved on the Segments page that the
    record does not set itself, as a users import does (docs/segments.md)."""
    if not valid:
        return
    from graphs.selectors import segment_fields

    fields = segment_fields(project)
    if not fields:
        return
    stored = dict(
        EndUser.objects.filter(
            project=project, external_id__in=set(valid.external_ids)
        ).values_list("external_id", "attributes")
    )
    for external_id, attributes in zip(valid.external_ids, valid.attributes, strict=True):
        before = stored.get(external_id) or {}
        given = {name.upper() for name in attributes}
        for name in fields:
            if name.upper() not in given and name in before:
                attributes[name] = before[name]


def upsert_items(*, project: Project, items: list) -> WriteResult:
    """Insert or replace items (id, attributes, creation time), marking them as in the catalog."""
    valid, rejections = records.validate_items(items)
    _upsert_catalog(store.ITEM_TABLE, project, valid, with_creation=True)
    return WriteResult(accepted=len(valid), rejected=rejections.items)


def _upsert_catalog(table: str, project: Project, valid, *, with_creation: bool = False):
    if not valid:
        return
    # The last record wins when an id repeats: one upsert statement may not touch a row
    # twice, and "later overrides earlier" is what a client sending both means. Sorted by
    # id for the same lock-order reason as in record_events.
    last = {external_id: i for i, external_id in enumerate(valid.external_ids)}
    positions = sorted(last.values(), key=lambda i: valid.external_ids[i])
    with transaction.atomic():
        store.upsert_catalog(
            table,
            project.pk,
            [valid.external_ids[i] for i in positions],
            [valid.attributes[i] for i in positions],
            [valid.creation_timestamps[i] for i in positions] if with_creation else None,
        )
