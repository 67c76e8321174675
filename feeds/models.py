"""Saved filters, promotions, and the log of what was served (for attribution)."""

from django.conf import settings
from django.db import models

from datasets.models import Project
from models_app.models import Campaign, ModelVersion


class SavedFilter(models.Model):
    """A named filter expression (feeds/engine/filter_syntax.py) that requests refer to by name."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="filters")
    name = models.SlugField(max_length=60)
    expression = models.TextField()
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_filter_name")
        ]

    def __str__(self):
        return self.name


class Promotion(models.Model):
    """A share of the slots (or fixed positions) given to items matching a saved filter."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="promotions")
    name = models.CharField(max_length=100)
    # PROTECT: deleting a filter a promotion uses must be a deliberate, explained refusal.
    filter = models.ForeignKey(SavedFilter, on_delete=models.PROTECT, related_name="promotions")
    # Values for the filter's $PARAMETERS.
    filter_values = models.JSONField(default=dict, blank=True)
    # Fraction of the slots of each response (0 < share <= 0.5), unless positions are given.
    share = models.FloatField(default=0.2)
    # Explicit 1-based positions instead of a share; empty means use the share.
    positions = models.JSONField(default=list, blank=True)
    # Only this campaign's responses; empty means every campaign of the project.
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="promotions"
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # Shown as the item's reason; empty means "promoted: <name>".
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_promotion_name")
        ]

    def __str__(self):
        return self.name


class ServedRecommendation(models.Model):
    """One response of the serving API: what was shown to whom, for attribution.

    Events posted later with the same ``recommendation_id`` (Interaction.recommendation_id)
    are the clicks and conversions of these impressions.
    """

    class Kind(models.TextChoices):
        RECOMMENDATIONS = "recommendations", "Recommendations"
        RELATED = "related", "Related items"
        RANK = "rank", "Re-ranking"
        FEED = "feed", "Feed"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="served", db_index=False
    )
    recommendation_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user_external_id = models.CharField(max_length=256, blank=True)
    # The item a related-items request was about.
    item_external_id = models.CharField(max_length=256, blank=True)
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # External ids shown, in order, and the source of each (model, popular, promotion, ...).
    items = models.JSONField(default=list)
    sources = models.JSONField(default=list)
    # Experiment variant (feeds); empty otherwise.
    variant = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["project", "created_at"], name="served_project_time"),
            # Experiment results read a project's responses by variant (most have none).
            models.Index(
                fields=["project", "variant"],
                name="served_variant",
                condition=~models.Q(variant=""),
            ),
        ]

    def __str__(self):
        return self.recommendation_id


class Feed(models.Model):
    """An ordered slot pattern over sources, repeated page after page (feeds/engine/feed.py)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feeds")
    name = models.SlugField(max_length=60)
    description = models.CharField(max_length=200, blank=True)
    # Source that fills a slot whose own source ran dry (same syntax as FeedSlot.source).
    fallback_source = models.CharField(max_length=120, blank=True)
    # A filter applied to the whole feed, with values for its $PARAMETERS.
    filter = models.ForeignKey(
        SavedFilter, null=True, blank=True, on_delete=models.PROTECT, related_name="feeds"
    )
    filter_values = models.JSONField(default=dict, blank=True)
    exclude_seen = models.BooleanField(default=True)
    # External item ids never shown in this feed.
    excluded_items = models.JSONField(default=list, blank=True)
    # {"1": "item-id", ...}: items pinned at 1-based positions.
    pinned_items = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_feed_name")]

    def __str__(self):
        return self.name


class FeedSlot(models.Model):
    """``count`` consecutive positions of a feed's pattern filled from one source.

    ``source`` names where candidates come from, e.g. ``campaign:<name>`` (any deployed model),
    or a built-in source such as ``popular`` or ``trending``; see the feeds service.
    """

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="slots")
    position = models.PositiveIntegerField()
    source = models.CharField(max_length=120)
    count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["feed", "position"]
        constraints = [
            models.UniqueConstraint(fields=["feed", "position"], name="unique_slot_position")
        ]

    def __str__(self):
        return f"{self.feed} #{self.position}: {self.count} x {self.source}"


class Experiment(models.Model):
    """An A/B(/n) test: users are assigned to variants (feeds) by stable hashing."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="experiments")
    name = models.SlugField(max_length=60)
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # Mixed into the hash so two experiments split the same users independently.
    salt = models.CharField(max_length=32)
    # Event types counted as a click and as a conversion when attributed to a variant.
    click_event = models.CharField(max_length=64, default="click")
    conversion_event = models.CharField(max_length=64, default="purchase")
    # Targeting: only users whose categorical user field ``target_field`` holds one of
    # ``target_values`` are enrolled (e.g. a saved SEGMENT); empty field = every user.
    target_field = models.CharField(max_length=64, blank=True)
    target_values = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_experiment_name")
        ]

    def __str__(self):
        return self.name


class ExperimentVariant(models.Model):
    """One arm of an experiment: a feed and its share of the traffic (weights are relative)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    name = models.SlugField(max_length=60)
    feed = models.ForeignKey(Feed, on_delete=models.PROTECT, related_name="variants")
    weight = models.PositiveIntegerField(default=1)
    is_control = models.BooleanField(default=False)

    class Meta:
        ordering = ["experiment", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="unique_variant_name")
        ]

    def __str__(self):
        return f"{self.experiment}/{self.name}"
