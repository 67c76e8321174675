"""Reads for the Segments pages, the graph runs and the follow source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.shortcuts import get_object_or_404

from datasets.models import EndUser, Interaction, Item, Project, Relation
from graphs.models import ClusteringRun, GraphRun

FETCH_ROWS = 50_000
# The follow source reads at most this many of the followed users' latest events.
FOLLOW_EVENTS_LIMIT = 20_000


@dataclass
class Users:
    """A project's end users: database ids, external ids and whether a users file named them."""

    ids: np.ndarray
    external_ids: np.ndarray
    in_catalog: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def known(self) -> np.ndarray:
        """The users a relation may name: the imported users when there is a users file,
        otherwise every user the project has seen (in events or relations)."""
        return self.external_ids[self.in_catalog] if self.in_catalog.any() else self.external_ids


def users(project: Project) -> Users:
    """Every end user of ``project`` in one query."""
    rows = list(
        EndUser.objects.filter(project=project)
        .order_by("pk")
        .values_list("pk", "external_id", "in_catalog")
    )
    external = np.empty(len(rows), dtype=object)
    external[:] = [r[1] for r in rows]
    return Users(
        ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        external_ids=external,
        in_catalog=np.fromiter((bool(r[2]) for r in rows), dtype=bool, count=len(rows)),
    )


@dataclass
class Edges:
    """Follower -> followee edges with external user ids."""

    followers: np.ndarray
    followees: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.followers)


def relation_edges(project: Project) -> Edges:
    """Every relation of ``project`` with the users' external ids (one query, streamed)."""
    sql, params = (
        Relation.objects.filter(project=project)
        .values_list("follower__external_id", "followee__external_id", "weight")
        .query.sql_with_params()
    )
    followers, followees, weights = [], [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            a, b, w = zip(*rows, strict=True)
            followers.extend(a)
            followees.extend(b)
            weights.extend(w)
    out_a = np.empty(len(followers), dtype=object)
    out_a[:] = followers
    out_b = np.empty(len(followees), dtype=object)
    out_b[:] = followees
    return Edges(out_a, out_b, np.asarray(weights, dtype=float))


def relation_count(project: Project) -> int:
    return Relation.objects.filter(project=project).count()


def interaction_count(project: Project) -> int:
    return Interaction.objects.filter(project=project).count()


def users_with_events(project: Project) -> int:
    return Interaction.objects.filter(project=project).values("user_id").distinct().count()


def users_with_edges(project: Project) -> int:
    followers = set(
        Relation.objects.filter(project=project).values_list("follower_id", flat=True).distinct()
    )
    followees = set(
        Relation.objects.filter(project=project).values_list("followee_id", flat=True).distinct()
    )
    return len(followers | followees)


# --- runs -------------------------------------------------------------------------------------


def recent_graph_runs(project: Project, limit: int = 20) -> list[GraphRun]:
    return list(GraphRun.objects.filter(project=project).order_by("-created_at", "-pk")[:limit])


def recent_clustering_runs(project: Project, limit: int = 30) -> list[ClusteringRun]:
    return list(
        ClusteringRun.objects.filter(project=project).order_by("-created_at", "-pk")[:limit]
    )


def graph_run_in_project(project: Project, run_id: int) -> GraphRun:
    return get_object_or_404(GraphRun, pk=run_id, project=project)


def clustering_run_in_project(project: Project, run_id: int) -> ClusteringRun:
    return get_object_or_404(ClusteringRun, pk=run_id, project=project)


def segment_fields(project: Project) -> set[str]:
    """User fields that "Save as segment field" wrote (they may be overwritten by another)."""
    names: set[str] = set()
    for saved in (
        ClusteringRun.objects.filter(project=project)
        .exclude(saved_fields=[])
        .values_list("saved_fields", flat=True)
    ):
        names.update(entry["field"] for entry in saved or [])
    return names


# --- the follow source ------------------------------------------------------------------------


@dataclass
class FollowedActivity:
    followee_weights: dict[int, float]
    event_users: np.ndarray
    event_items: np.ndarray
    timestamps: np.ndarray
    seen_items: set[int]


def followed_activity(project: Project, user_pk: int) -> FollowedActivity:
    """The users ``user_pk`` follows (with weights), their latest events (at most
    FOLLOW_EVENTS_LIMIT) and the items the user already interacted with: three queries."""
    followees = dict(
        Relation.objects.filter(project=project, follower_id=user_pk).values_list(
            "followee_id", "weight"
        )
    )
    rows = []
    if followees:
        rows = list(
            Interaction.objects.filter(project=project, user_id__in=list(followees))
            .order_by("-timestamp")
            .values_list("user_id", "item_id", "timestamp")[:FOLLOW_EVENTS_LIMIT]
        )
    seen = set(
        Interaction.objects.filter(project=project, user_id=user_pk).values_list(
            "item_id", flat=True
        )
    )
    n = len(rows)
    return FollowedActivity(
        followee_weights={int(k): float(v or 1.0) for k, v in followees.items()},
        event_users=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        event_items=np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
        timestamps=np.fromiter((r[2] for r in rows), dtype=np.float64, count=n),
        seen_items=seen,
    )


def item_external_ids(project: Project, item_pks) -> dict[int, str]:
    return dict(
        Item.objects.filter(project=project, pk__in=list(item_pks)).values_list("pk", "external_id")
    )


def end_user_pk(project: Project, external_id: str) -> int | None:
    return (
        EndUser.objects.filter(project=project, external_id=external_id)
        .values_list("pk", flat=True)
        .first()
    )
