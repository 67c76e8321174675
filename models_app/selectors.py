"""Reads for training, pages and the command line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import Count
from django.shortcuts import get_object_or_404

from datasets.models import Interaction, Project
from models_app.models import ModelVersion, TrainingRun

FETCH_ROWS = 50_000


@dataclass
class InteractionArrays:
    """A project's events as parallel arrays (database ids of users and items)."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    event_types: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def interaction_arrays(project: Project, event_types: list[str] | None = None):
    """Every interaction of ``project`` (only ``event_types`` when given), in ONE query."""
    queryset = Interaction.objects.filter(project=project)
    if event_types:
        queryset = queryset.filter(event_type__in=list(event_types))
    sql, params = queryset.values_list(
        "user_id", "item_id", "timestamp", "event_type"
    ).query.sql_with_params()
    users, items, times, types = [], [], [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                break
            u, i, t, e = zip(*rows, strict=True)
            users.append(np.fromiter(u, dtype=np.int64, count=len(rows)))
            items.append(np.fromiter(i, dtype=np.int64, count=len(rows)))
            times.append(np.fromiter(t, dtype=np.int64, count=len(rows)))
            types.append(np.array(e, dtype=object))
    if not users:
        empty = np.zeros(0, dtype=np.int64)
        return InteractionArrays(empty, empty.copy(), empty.copy(), np.zeros(0, dtype=object))
    return InteractionArrays(
        np.concatenate(users), np.concatenate(items), np.concatenate(times), np.concatenate(types)
    )


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
