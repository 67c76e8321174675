"""Reads for training, pages and the command line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Count
from django.shortcuts import get_object_or_404

from datasets.models import EndUser, Interaction, Item, Project
from models_app.models import ModelVersion, TrainingRun

FETCH_ROWS = 50_000


@dataclass
class InteractionArrays:
    """A project's events as parallel arrays (database ids of users and items)."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    event_types: np.ndarray
    # Per event: its session (or order) id, "" when it has none (read in the same query).
    sessions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)


def interaction_arrays(project: Project, event_types: list[str] | None = None):
    """Every interaction of ``project`` (only ``event_types`` when given), in ONE query."""
    queryset = Interaction.objects.filter(project=project)
    if event_types:
        queryset = queryset.filter(event_type__in=list(event_types))
    sql, params = queryset.values_list(
        "user_id", "item_id", "timestamp", "event_type", "session_id"
    ).query.sql_with_params()
    users, items, times, types, sessions = [], [], [], [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                break
            u, i, t, e, s = zip(*rows, strict=True)
            users.append(np.fromiter(u, dtype=np.int64, count=len(rows)))
            items.append(np.fromiter(i, dtype=np.int64, count=len(rows)))
            times.append(np.fromiter(t, dtype=np.int64, count=len(rows)))
            types.append(np.array(e, dtype=object))
            sessions.append(np.array(s, dtype=object))
    if not users:
        empty = np.zeros(0, dtype=np.int64)
        nothing = np.zeros(0, dtype=object)
        return InteractionArrays(empty, empty.copy(), empty.copy(), nothing, nothing.copy())
    return InteractionArrays(
        np.concatenate(users),
        np.concatenate(items),
        np.concatenate(times),
        np.concatenate(types),
        np.concatenate(sessions),
    )


@dataclass
class ItemCatalog:
    """A project's items as training sees them (see :func:`item_catalog`)."""

    ids: np.ndarray  # database ids of every item of the project
    in_catalog: np.ndarray  # bool per id: imported from an items file (not only seen in events)
    features: pd.DataFrame  # indexed by id: one column per attribute, plus CREATION_TIMESTAMP
    external_ids: dict[str, int]  # external id -> database id


def item_catalog(project: Project) -> ItemCatalog:
    """Every item of ``project`` with its attributes, in ONE query.

    ``features`` has one column per key of ``Item.attributes`` (the field names of the items
    file as imported, e.g. ``TITLE``, ``CATEGORY``); multi-valued categories (stored as lists)
    are joined with ``|`` so recipes read ``"Shoes|Running"``. ``CREATION_TIMESTAMP`` is a float
    (unix seconds), NaN when unknown.
    """
    rows = list(
        Item.objects.filter(project=project).values_list(
            "pk", "external_id", "in_catalog", "attributes", "creation_timestamp"
        )
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    records = [
        {k: "|".join(map(str, v)) if isinstance(v, list) else v for k, v in (r[3] or {}).items()}
        for r in rows
    ]
    features = pd.DataFrame.from_records(records, index=ids) if rows else pd.DataFrame(index=ids)
    features["CREATION_TIMESTAMP"] = np.array(
        [np.nan if r[4] is None else float(r[4]) for r in rows], dtype=np.float64
    )
    return ItemCatalog(
        ids=ids,
        in_catalog=np.array([bool(r[2]) for r in rows], dtype=bool),
        features=features,
        external_ids={r[1]: r[0] for r in rows},
    )


def user_attributes(project: Project) -> pd.DataFrame | None:
    """Every user's attributes (users file, API, saved segment fields) indexed by user id, in
    ONE query; None when no user has any."""
    rows = [
        (pk, attributes)
        for pk, attributes in EndUser.objects.filter(project=project).values_list(
            "pk", "attributes"
        )
        if attributes
    ]
    if not rows:
        return None
    return pd.DataFrame.from_records(
        [{k: "|".join(map(str, v)) if isinstance(v, list) else v for k, v in a.items()}
         for _, a in rows],
        index=np.array([pk for pk, _ in rows], dtype=np.int64),
    )  # fmt: skip


@dataclass
class ImpressionLog:
    """One entry per item shown: who saw it, at the event on which item, and what was shown."""

    users: np.ndarray
    items: np.ndarray
    shown: np.ndarray

    def __len__(self) -> int:
        return len(self.shown)


def impression_log(project: Project, external_ids: dict[str, int]) -> ImpressionLog:
    """The items listed in the events' ``impression`` column (pipe-separated external ids), in
    ONE query over the events that have one, whatever their type. ``external_ids`` maps external
    to database ids (:attr:`ItemCatalog.external_ids`); unknown ids are dropped."""
    sql, params = (
        Interaction.objects.filter(project=project)
        .exclude(impression="")
        .values_list("user_id", "item_id", "impression")
        .query.sql_with_params()
    )
    users, items, shown = [], [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                break
            u, i, lists = zip(*rows, strict=True)
            lengths = np.fromiter((s.count("|") + 1 for s in lists), np.int64, len(lists))
            users.append(np.repeat(np.fromiter(u, np.int64, len(rows)), lengths))
            items.append(np.repeat(np.fromiter(i, np.int64, len(rows)), lengths))
            ids = "|".join(lists).split("|")
            shown.append(np.fromiter((external_ids.get(x.strip(), -1) for x in ids), np.int64))
    if not users:
        empty = np.zeros(0, dtype=np.int64)
        return ImpressionLog(empty, empty.copy(), empty.copy())
    shown_ids = np.concatenate(shown)
    keep = shown_ids >= 0
    return ImpressionLog(np.concatenate(users)[keep], np.concatenate(items)[keep], shown_ids[keep])


def data_volume(project: Project, event_types: list[str] | None = None) -> tuple[int, int]:
    """(interactions, users with two or more interactions), for the pre-flight check."""
    queryset = Interaction.objects.filter(project=project)
    if event_types:
        queryset = queryset.filter(event_type__in=list(event_types))
    total = queryset.count()
    repeat = queryset.values("user_id").annotate(n=Count("id")).filter(n__gte=2).count()
    return total, repeat


def event_types_in(project: Project) -> list[str]:
    return sorted(
        t
        for t in Interaction.objects.filter(project=project)
        .values_list("event_type", flat=True)
        .distinct()
        if t
    )


def recent_runs(project: Project, limit: int = 20):
    return list(
        TrainingRun.objects.filter(project=project)
        .select_related("solution", "version")
        .order_by("-created_at", "-pk")[:limit]
    )


def recent_versions(project: Project, limit: int = 20):
    return list(
        ModelVersion.objects.filter(project=project)
        .select_related("solution", "run")
        .order_by("-created_at", "-pk")[:limit]
    )


def run_in_project(project: Project, run_id: int) -> TrainingRun:
    return get_object_or_404(
        TrainingRun.objects.select_related("solution"), pk=run_id, project=project
    )


# --- campaigns ------------------------------------------------------------------------------


def can_change_campaigns(*, user, project: Project) -> bool:
    """Owners and editors may create, deploy, roll back and delete campaigns; viewers look."""
    from datasets.models import Membership

    return project.memberships.filter(
        user=user, role__in=[Membership.Role.OWNER, Membership.Role.EDITOR]
    ).exists()


def campaigns_for_project(project: Project):
    """The project's campaigns with their version, previous version and solution (one query)."""
    from models_app.models import Campaign

    return list(
        Campaign.objects.filter(project=project)
        .select_related("version", "version__solution", "previous_version", "solution")
        .order_by("name")
    )


def campaign_in_project(project: Project, campaign_id: int):
    from models_app.models import Campaign

    return get_object_or_404(
        Campaign.objects.select_related("version", "previous_version", "solution"),
        pk=campaign_id,
        project=project,
    )


def campaign_by_name(project: Project, name: str):
    """The campaign called ``name``; ``Http404`` with a message naming the valid ones."""
    from django.http import Http404

    from models_app.models import Campaign

    campaign = (
        Campaign.objects.filter(project=project, name=name)
        .select_related("version", "previous_version", "solution")
        .first()
    )
    if campaign is None:
        names = list(
            Campaign.objects.filter(project=project).order_by("name").values_list("name", flat=True)
        )
        known = f"its campaigns are: {', '.join(names)}" if names else "it has no campaign yet"
        raise Http404(f"Project “{project.slug}” has no campaign named “{name}”; {known}.")
    return campaign


def campaign_history(project: Project, campaign=None, limit: int = 50):
    """Deployments (newest first) of one campaign, or of every campaign of the project."""
    from models_app.models import CampaignDeployment

    history = CampaignDeployment.objects.filter(campaign__project=project)
    if campaign is not None:
        history = history.filter(campaign=campaign)
    return list(
        history.select_related("campaign", "version", "previous_version", "user").order_by(
            "-created_at", "-pk"
        )[:limit]
    )


def deployable_versions(project: Project, limit: int = 100):
    """The project's model versions, newest first, with their solution (for the deploy form)."""
    return list(
        ModelVersion.objects.filter(project=project)
        .select_related("solution")
        .order_by("-created_at", "-pk")[:limit]
    )


def solutions_for_project(project: Project):
    from models_app.models import Solution

    return list(Solution.objects.filter(project=project).order_by("-created_at", "-pk"))
