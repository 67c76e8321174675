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
    # Scheduled retraining: a django-q2 Schedule named ``retrain-solution-<pk>`` runs it every
    # this many hours; None means manual only.
    retrain_every_hours = models.PositiveIntegerField(null=True, blank=True)
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
    # AutoML runs: every candidate tried, with its validation score; the chosen one is marked.
    trials = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Model version #{self.pk} ({self.recipe})"


class Campaign(models.Model):
    """A named endpoint that serves one model version; apps ask for it by name."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="campaigns")
    name = models.SlugField(max_length=60)
    description = models.CharField(max_length=200, blank=True)
    # The solution whose versions this campaign serves (for auto-deploy); optional.
    solution = models.ForeignKey(
        Solution, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns"
    )
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What "roll back" returns to.
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Deploy each new successful version of ``solution`` automatically (e.g. after scheduled
    # retraining), unless its offline metric dropped too far (see services).
    auto_deploy = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_campaign_name")
        ]

    def __str__(self):
        return self.name


class CampaignDeployment(models.Model):
    """History of a campaign: every deploy, rollback, automatic deploy or skipped auto-deploy."""

    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deployed"
        ROLLBACK = "rollback", "Rolled back"
        AUTO = "auto", "Auto-deployed"
        SKIPPED = "skipped", "Auto-deploy skipped"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deployments")
    action = models.CharField(max_length=10, choices=Action.choices)
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"{self.campaign} {self.action} #{self.version_id}"


class BatchExport(models.Model):
    """Top-N recommendations for every user (or an uploaded list) written to a file."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batch_exports")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="exports")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.CSV)
    num_results = models.PositiveIntegerField(default=25)
    exclude_seen = models.BooleanField(default=True)
    # Uploaded list of user ids (one per line); blank means every user the version knows.
    user_list_path = models.CharField(max_length=500, blank=True)
    file_path = models.CharField(max_length=500, blank=True)
    progress = models.FloatField(default=0.0)
    users_exported = models.IntegerField(default=0)
    # Listed users the model does not know: they get the popularity fallback.
    users_unknown = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Batch export #{self.pk} ({self.status})"

    @property
    def is_finished(self):
        return self.status in self.FINISHED
