"""Stored graph analyses and clustering runs: parameters, status, quality and their artefacts.

A run's files live in ``ARTIFACT_DIR/<project>/graphs/<kind>-<id>/`` (progress, log, cancel
flag, and the per-user results as parquet). The row keeps what the pages show: the summary
numbers, the input report and the inputs of the quality charts, so a page never reads the
per-user files except for a download.
"""

from django.conf import settings
from django.db import models

from datasets.models import Project


class AnalysisRun(models.Model):
    """What every background analysis has: status, progress, log, timing, who started it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    artefact_dir = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True
        ordering = ["-created_at", "-pk"]

    @property
    def is_finished(self):
        return self.status in self.FINISHED


class GraphRun(AnalysisRun):
    """Follower-graph analytics of the project's relations: per-user degree centralities,
    betweenness (exact or sampled), clustering coefficient and PageRank."""

    KIND = "graph"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="graph_runs")
    n_users = models.IntegerField(default=0)
    n_edges = models.IntegerField(default=0)
    # The edge hygiene report of build_follower_graph plus how betweenness was computed.
    report = models.JSONField(default=dict, blank=True)
    # Summary numbers, top users by PageRank / betweenness, the sampled graph view.
    summary = models.JSONField(default=dict, blank=True)

    class Meta(AnalysisRun.Meta):
        pass

    def __str__(self):
        return f"Graph analysis #{self.pk} ({self.status})"


class ClusteringRun(AnalysisRun):
    """One clustering of the project's users, with its parameters and quality."""

    KIND = "clustering"

    class Method(models.TextChoices):
        KMEANS_BEHAVIOUR = "kmeans-behaviour", "k-means on behaviour"
        KMEANS_GRAPH = "kmeans-graph", "k-means on graph features"
        SPECTRAL_GRAPH = "spectral-graph", "Spectral clustering of the follower graph"
        LOUVAIN = "louvain", "Louvain communities of the follower graph"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="clustering_runs")
    method = models.CharField(max_length=20, choices=Method.choices)
    n_users = models.IntegerField(default=0)
    k = models.IntegerField(null=True, blank=True)
    silhouette = models.FloatField(null=True, blank=True)
    modularity = models.FloatField(null=True, blank=True)
    sizes = models.JSONField(default=list, blank=True)
    # Per cluster: size, share, activity, top categories, graph stats and a display name.
    profiles = models.JSONField(default=list, blank=True)
    # Inputs of the quality charts: silhouette by k, per-cluster silhouettes (sampled),
    # modularity by resolution, the sampled graph view, notes.
    quality = models.JSONField(default=dict, blank=True)
    # Every "save as segment field": {"field", "users", "at"}.
    saved_fields = models.JSONField(default=list, blank=True)

    class Meta(AnalysisRun.Meta):
        pass

    def __str__(self):
        return f"Clustering run #{self.pk} ({self.method}, {self.status})"
