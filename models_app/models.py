"""Solutions (what to train), training runs (one attempt) and model versions (a success)."""

from django.conf import settings
from django.db import models

from datasets.models import Project


class Solution(models.Model):
    """A recipe, its parameters and which event types count: trained into model versions."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="solutions")
    name = models.CharField(max_length=100)
    recipe = models.CharField(max_length=60)
    params = models.JSONField(default=dict, blank=True)
    # Event types read for training; empty means every event type.
    event_types = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.recipe})"


class TrainingRun(models.Model):
    """One attempt to train a solution; it creates a ModelVersion only when it succeeds."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="runs")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Training run #{self.pk} ({self.status})"

    @property
    def is_finished(self):
        return self.status in self.FINISHED


class ModelVersion(models.Model):
    """A trained model: artefacts on disk plus the offline metrics of its training run."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="versions")
    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="version")
    artefact_dir = models.CharField(max_length=500)
    recipe = models.CharField(max_length=60)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    n_users = models.IntegerField(default=0)
    n_items = models.IntegerField(default=0)
    n_interactions = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Model version #{self.pk} ({self.recipe})"
