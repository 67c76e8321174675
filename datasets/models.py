"""Projects (tenants) and who may use them."""

from django.conf import settings
from django.db import models


class Project(models.Model):
    """One tenant's workspace: every dataset, model, feed and API key belongs to one."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        EDITOR = "editor", "Editor"
        VIEWER = "viewer", "Viewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="unique_project_member")
        ]

    def __str__(self):
        return f"{self.user} in {self.project} ({self.role})"


class DatasetKind(models.TextChoices):
    INTERACTIONS = "interactions", "Interactions"
    ITEMS = "items", "Items"
    USERS = "users", "Users"
    RELATIONS = "relations", "Relations"


class DatasetSchema(models.Model):
    """The typed fields of one dataset kind in a project (see datasets.ingest.schema)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schemas")
    kind = models.CharField(max_length=20, choices=DatasetKind.choices)
    fields = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "kind"], name="unique_schema_per_kind")
        ]

    def __str__(self):
        return f"{self.project} {self.kind} schema"


class CatalogEntry(models.Model):
    """An id known to the project, with its attributes.

    ``in_catalog`` is False for ids seen only in events (not imported as items/users).
    The unique (project, external_id) constraint's index serves project lookups, so the
    project foreign key has no index of its own.
    """

    external_id = models.CharField(max_length=256)
    in_catalog = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self):
        return self.external_id


class Item(CatalogEntry):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    creation_timestamp = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="unique_item_id")
        ]


class EndUser(CatalogEntry):
    """A user of the customer's app (not a recsite login)."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="end_users", db_index=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="unique_end_user_id")
        ]


class Interaction(models.Model):
    """One event. Timestamps are epoch seconds (UTC), the unit training and serving use.

    The foreign keys carry no database constraint and no index of their own: the import
    and event paths create the ids they reference in the same transaction, and every
    constraint trigger or index costs a bulk load as much as the COPY itself (measured:
    about 1 s per index per 675k rows on PostgreSQL). One composite index serves the
    per-user reads of serving; training reads a project's rows in one scan.
    """

    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="interactions",
        db_constraint=False,
        db_index=False,
    )
    user = models.ForeignKey(
        EndUser, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False
    )
    item = models.ForeignKey(Item, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False)
    timestamp = models.BigIntegerField()
    event_type = models.CharField(max_length=64, blank=True, default="")
    event_value = models.FloatField(null=True, blank=True)
    impression = models.TextField(blank=True, default="")
    session_id = models.CharField(max_length=256, blank=True, default="")
    recommendation_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [
            # A user's newest events, read by every serving request: the index also holds the
            # columns it reads, so PostgreSQL answers from the index alone (no table visit).
            models.Index(
                fields=["project", "user", "timestamp"],
                include=["item", "event_type", "event_value"],
                name="interaction_user_history",
            ),
            # Attribution reads a project's events by recommendation id; most events have none,
            # so the index holds only those that do.
            models.Index(
                fields=["project", "recommendation_id"],
                name="interaction_attribution",
                condition=~models.Q(recommendation_id=""),
            ),
        ]

    def __str__(self):
        return f"{self.user_id} {self.event_type} {self.item_id} @ {self.timestamp}"


class Relation(models.Model):
    """A follower -> followee edge between two end users."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="relations")
    follower = models.ForeignKey(
        EndUser, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    followee = models.ForeignKey(
        EndUser, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    weight = models.FloatField(default=1.0)
    timestamp = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "follower", "followee"], name="unique_relation"
            )
        ]

    def __str__(self):
        return f"{self.follower_id} follows {self.followee_id}"


class ImportJob(models.Model):
    """One CSV import, from upload through validation to the background load and its report."""

    class Mode(models.TextChoices):
        FULL = "full", "Full (replace)"
        INCREMENTAL = "incremental", "Incremental (append / upsert)"

    class Status(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        VALIDATED = "validated", "Validated"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    kind = models.CharField(max_length=20, choices=DatasetKind.choices)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.INCREMENTAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UPLOADED)
    source_name = models.CharField(max_length=255)
    file_path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0)
    dialect = models.JSONField(default=dict, blank=True)
    mapping = models.JSONField(default=dict, blank=True)
    validation = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    rows_processed = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.kind} import #{self.pk} ({self.status})"

    @property
    def is_finished(self):
        return self.status in self.FINISHED


class ApiKey(models.Model):
    """A project's API key. Only a SHA-256 of the key is stored; the key is shown once."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self):
        return self.revoked_at is None
