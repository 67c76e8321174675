"""Experiments: A/B(/n) tests of feeds with stable assignment, attribution and significance.

Writes (create, edit, start, pause, stop) check their input and raise
:class:`feeds.services.InvalidInput` with one message per wrong field. Reads: the project's
experiments, :func:`resolve_feed` for the feed endpoint, and :func:`experiment_results` (per
variant impressions, clicks, conversions and users from the served log and the events that came
back with its recommendation ids, with intervals and verdicts from ``feeds.engine.stats``).

Responses served inside a running experiment are logged with ``ServedRecommendation.variant``
set to :func:`variant_label` (``"<experiment>:<variant>"``): the experiment's name is part of
the label so two experiments with a variant called ``b`` do not mix their results.

An experiment may target a segment (``target_field`` / ``target_values``, e.g. the SEGMENT
field saved on the Segments page): only users whose stored attribute holds one of the values
are enrolled; the others get the control feed, unlabelled, so they never count.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from datasets.models import EndUser, Interaction, Project
from feeds.engine import assignment
from feeds.engine import stats as engine_stats
from feeds.models import Experiment, ExperimentVariant, Feed, ServedRecommendation
from feeds.services import InvalidInput

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# ServedRecommendation.variant holds "<experiment>:<variant>" in 60 characters.
MAX_LABEL_LENGTH = 60
MAX_DESCRIPTION_LENGTH = 200
MAX_VARIANTS = 8
MAX_WEIGHT = 1000
EVENT_TYPE_LENGTH = 64
MAX_TARGET_VALUES = 50
# The form lists at most this many values per targetable user field.
MAX_LISTED_VALUES = 200


class FeedNotFound(LookupError):
    """No feed and no experiment of that name in the project (the API answers 404)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class VariantInput:
    """One variant row of the create/edit form."""

    name: str
    feed: int | Feed | None
    weight: int | str | None = 1
    is_control: bool = False


@dataclass
class TargetField:
    """A user field an experiment can target: its name and (some of) its current values."""

    name: str
    values: list[str]
    more: bool = False  # more than MAX_LISTED_VALUES distinct values


def _value_sort_key(value: str):
    if value.lstrip("-").replace(".", "", 1).isdigit():
        return (0, float(value), value)
    return (1, 0.0, value)


def _users_with_value(project_id: int, field_name: str, values: list[str]):
    """The project's users whose attribute ``field_name`` is one of ``values`` (as text)."""
    return (
        EndUser.objects.filter(project_id=project_id)
        # Cast: a plain text comparison (the JSON "IN" lookup misreads text on SQLite).
        .annotate(_target=Cast(KeyTextTransform(field_name, "attributes"), TextField()))
        .filter(_target__in=list(values))
    )


def target_fields(project: Project) -> list[TargetField]:
    """The project's single-valued categorical user fields (a saved segment field such as
    SEGMENT is one) with their current values, sorted (numbers as numbers): what an experiment
    can target. One query per field."""
    from datasets.imports import get_schema
    from datasets.ingest.schema import reserved_names

    reserved = {name.upper() for name in reserved_names("users")}
    result = []
    for f in get_schema(project, "users"):
        if f.type != "categorical" or f.multi or f.name.upper() in reserved:
            continue
        values = (
            EndUser.objects.filter(project=project)
            .annotate(_value=KeyTextTransform(f.name, "attributes"))
            .exclude(_value__isnull=True)
            .values_list("_value", flat=True)
            .distinct()
            .order_by()[: MAX_LISTED_VALUES + 1]
        )
        values = sorted({str(v) for v in values if str(v) != ""}, key=_value_sort_key)
        result.append(
            TargetField(f.name, values[:MAX_LISTED_VALUES], more=len(values) > MAX_LISTED_VALUES)
        )
    return result


def _check_target(project: Project, field_name: str | None, values) -> tuple[str, list[str]]:
    """Clean targeting input: ("", []) for every user, else (field, values); InvalidInput."""
    field_name = (field_name or "").strip()
    if isinstance(values, str):
        values = values.split(",")
    values = list(dict.fromkeys(str(v).strip() for v in (values or []) if str(v).strip()))
    if not field_name:
        if values:
            raise InvalidInput(
                {
                    "target": "Pick the user field the values belong to (e.g. SEGMENT), or leave "
                    "the values empty to include every user."
                }
            )
        return "", []
    fields = {f.name.upper(): f for f in target_fields(project)}
    chosen = fields.get(field_name.upper())
    if chosen is None:
        raise InvalidInput(
            {
                "target": f"“{field_name[:64]}” is not a categorical user field of this project; "
                "target one of "
                + (
                    ", ".join(sorted(f.name for f in fields.values()))
                    or "none (no categorical "
                    "user field yet: import users with one, or save segments on the Segments "
                    "page)"
                )
                + "."
            }
        )
    if not values:
        raise InvalidInput(
            {
                "target": f"Pick at least one value of {chosen.name} to target (e.g. "
                f"{', '.join(chosen.values[:3]) or 'a segment number'})."
            }
        )
    if len(values) > MAX_TARGET_VALUES:
        raise InvalidInput({"target": f"Target at most {MAX_TARGET_VALUES} values."})
    present = set(
        _users_with_value(project.pk, chosen.name, values)
        .values_list("_target", flat=True)
        .distinct()
        .order_by()
    )
    missing = [v for v in values if v not in {str(p) for p in present}]
    if missing:
        raise InvalidInput(
            {
                "target": f"No user has {chosen.name} = {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''}; its values are "
                f"{', '.join(chosen.values[:20]) or 'none yet'}"
                f"{' …' if chosen.more or len(chosen.values) > 20 else ''}."
            }
        )
    return chosen.name, sorted(values, key=_value_sort_key)


def variant_label(experiment: Experiment, variant: ExperimentVariant | str) -> str:
    """What ``ServedRecommendation.variant`` holds for responses served by ``variant``."""
    name = variant if isinstance(variant, str) else variant.name
    return f"{experiment.name}:{name}"


# --------------------------------------------------------------------------- validation


def _check_name(project: Project, name: str, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput({"name": "Give the experiment a name, e.g. home-feed-test."})
    if len(name) > MAX_LABEL_LENGTH - 2 or not NAME_PATTERN.match(name):
        raise InvalidInput(
            {
                "name": f"“{name[:80]}” is not a valid name: use lowercase letters, digits, "
                f"hyphens and underscores (up to {MAX_LABEL_LENGTH - 2} characters), starting "
                "with a letter or digit."
            }
        )
    taken = Experiment.objects.filter(project=project, name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise InvalidInput({"name": f"This project already has an experiment named “{name}”."})
    if Feed.objects.filter(project=project, name=name).exists():
        raise InvalidInput(
            {
                "name": f"“{name}” is the name of a feed. Apps request an experiment by its name "
                "at /api/v1/feeds/<name>, so it must differ from every feed's name; try "
                f"{name}-test."
            }
        )
    return name


def _check_event_type(value: str, field_name: str, default: str) -> str:
    value = (value or "").strip() or default
    if len(value) > EVENT_TYPE_LENGTH:
        raise InvalidInput({field_name: f"Event types are at most {EVENT_TYPE_LENGTH} characters."})
    return value


def _check_variants(project: Project, experiment_name: str, rows: list[VariantInput]) -> list:
    """Clean variant rows: [(name, feed, weight, is_control)]; InvalidInput on any mistake."""
    rows = [r for r in rows if (r.name or "").strip() or r.feed]
    if len(rows) < 2:
        raise InvalidInput(
            {
                "variants": "An experiment needs at least two variants (a control and one to "
                "compare with it), each with a name and a feed."
            }
        )
    if len(rows) > MAX_VARIANTS:
        raise InvalidInput({"variants": f"At most {MAX_VARIANTS} variants per experiment."})
    feeds = {f.pk: f for f in Feed.objects.filter(project=project)}
    cleaned, seen, problems = [], set(), []
    for number, row in enumerate(rows, start=1):
        name = (row.name or "").strip()
        where = f"Variant {number}" + (f" (“{name}”)" if name else "")
        if not name:
            problems.append(f"{where} has no name; name it, e.g. control or b.")
            continue
        if not NAME_PATTERN.match(name):
            problems.append(
                f"{where}: use lowercase letters, digits, hyphens and underscores in the name."
            )
            continue
        if len(experiment_name) + 1 + len(name) > MAX_LABEL_LENGTH:
            problems.append(
                f"{where}: the experiment's and the variant's names together are limited to "
                f"{MAX_LABEL_LENGTH - 1} characters (they are logged together); shorten one."
            )
            continue
        if name in seen:
            problems.append(f"{where}: two variants are named “{name}”; names must differ.")
            continue
        seen.add(name)
        feed_id = row.feed.pk if isinstance(row.feed, Feed) else row.feed
        try:
            feed = feeds.get(int(feed_id)) if feed_id not in (None, "") else None
        except (TypeError, ValueError):
            feed = None
        if feed is None:
            problems.append(
                f"{where} has no feed of this project; pick one of "
                f"{', '.join(sorted(f.name for f in feeds.values())) or 'the feeds (none yet)'}."
            )
            continue
        try:
            weight = int(str(row.weight).strip()) if row.weight not in (None, "") else 1
        except ValueError:
            problems.append(f"{where}: the weight must be a whole number such as 1 or 3.")
            continue
        if not 1 <= weight <= MAX_WEIGHT:
            problems.append(
                f"{where}: the weight must be from 1 to {MAX_WEIGHT} (weights are relative: "
                "1 and 1 split 50/50, 3 and 1 split 75/25)."
            )
            continue
        cleaned.append((name, feed, weight, bool(row.is_control)))
    if problems:
        raise InvalidInput({"variants": " ".join(problems)})
    controls = [c for c in cleaned if c[3]]
    if len(controls) != 1:
        raise InvalidInput(
            {
                "variants": "Mark exactly one variant as the control (the feed users get today); "
                f"{len(controls)} are marked."
            }
        )
    return cleaned


# --------------------------------------------------------------------------- writes


def create_experiment(
    *,
    project: Project,
    name: str,
    variants: list[VariantInput],
    description: str = "",
    click_event: str = "click",
    conversion_event: str = "purchase",
    target_field: str = "",
    target_values: list[str] | str | None = None,
    user=None,
) -> Experiment:
    """A draft experiment with its variants (start it to serve them).

    ``target_field`` / ``target_values`` restrict it to the users whose categorical user field
    holds one of the values (e.g. a saved segment: ``"SEGMENT"``, ``["0", "2"]``); the others
    are not enrolled (see :func:`resolve_feed`)."""
    name = _check_name(project, name)
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            {"description": f"Keep the description under {MAX_DESCRIPTION_LENGTH} characters."}
        )
    click_event = _check_event_type(click_event, "click_event", "click")
    conversion_event = _check_event_type(conversion_event, "conversion_event", "purchase")
    cleaned = _check_variants(project, name, variants)
    target_field, target_values = _check_target(project, target_field, target_values)
    with transaction.atomic():
        experiment = Experiment.objects.create(
            project=project,
            name=name,
            description=description,
            salt=secrets.token_hex(8),
            click_event=click_event,
            conversion_event=conversion_event,
            target_field=target_field,
            target_values=target_values,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        ExperimentVariant.objects.bulk_create(
            ExperimentVariant(
                experiment=experiment, name=v_name, feed=feed, weight=weight, is_control=control
            )
            for v_name, feed, weight, control in cleaned
        )
    return experiment


def update_experiment(
    *,
    experiment: Experiment,
    variants: list[VariantInput] | None = None,
    weights: dict[str, int | str] | None = None,
    description: str | None = None,
    target_field: str | None = None,
    target_values: list[str] | str | None = None,
) -> Experiment:
    """Edit an experiment.

    A draft can change everything but its name (``variants`` replaces them all; ``target_field``
    "" targets every user). Once started,
    only the description and the weights of the existing variants may change: names and feeds
    are what the results are about. A weight change moves only the users needed to reach the
    new split (feeds/engine/assignment.py).
    """
    errors = {}
    experiment.refresh_from_db(fields=["status"])  # the status may have changed meanwhile
    if description is not None:
        description = description.strip()
        if len(description) > MAX_DESCRIPTION_LENGTH:
            errors["description"] = (
                f"Keep the description under {MAX_DESCRIPTION_LENGTH} characters."
            )
    if experiment.status == Experiment.Status.STOPPED:
        raise InvalidInput(
            {"status": "This experiment is stopped; create a new one to test again."}
        )
    current = list(experiment.variants.select_related("feed"))
    if variants is not None:
        if experiment.status != Experiment.Status.DRAFT:
            raise InvalidInput(
                {
                    "variants": "Variants and their feeds cannot change once the experiment "
                    "has started (the results are about them); change the weights, or stop it "
                    "and create a new experiment."
                }
            )
        cleaned = _check_variants(experiment.project, experiment.name, variants)
    else:
        cleaned = None
    target = None
    if target_field is not None:
        if experiment.status != Experiment.Status.DRAFT:
            raise InvalidInput(
                {
                    "target": "The targeted users cannot change once the experiment has started "
                    "(the results are about them); stop it and create a new experiment."
                }
            )
        target = _check_target(experiment.project, target_field, target_values)
    new_weights = {}
    for name, raw in (weights or {}).items():
        variant = next((v for v in current if v.name == name), None)
        if variant is None:
            errors["weights"] = f"No variant “{name}” in this experiment."
            break
        try:
            value = int(str(raw).strip())
        except ValueError:
            errors["weights"] = f"The weight of {name} must be a whole number such as 1 or 3."
            break
        if not 1 <= value <= MAX_WEIGHT:
            errors["weights"] = f"The weight of {name} must be from 1 to {MAX_WEIGHT}."
            break
        new_weights[name] = value
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        if description is not None:
            experiment.description = description
            experiment.save(update_fields=["description", "updated_at"])
        if target is not None:
            experiment.target_field, experiment.target_values = target
            experiment.save(update_fields=["target_field", "target_values", "updated_at"])
        if cleaned is not None:
            experiment.variants.all().delete()
            ExperimentVariant.objects.bulk_create(
                ExperimentVariant(
                    experiment=experiment, name=v_name, feed=feed, weight=weight, is_control=control
                )
                for v_name, feed, weight, control in cleaned
            )
        for variant in current:
            if cleaned is None and variant.name in new_weights:
                variant.weight = new_weights[variant.name]
                variant.save(update_fields=["weight"])
    return experiment


_TRANSITIONS = {
    "start": ({Experiment.Status.DRAFT, Experiment.Status.PAUSED}, Experiment.Status.RUNNING),
    "pause": ({Experiment.Status.RUNNING}, Experiment.Status.PAUSED),
    "stop": (
        {Experiment.Status.RUNNING, Experiment.Status.PAUSED, Experiment.Status.DRAFT},
        Experiment.Status.STOPPED,
    ),
}


def change_status(*, experiment: Experiment, action: str) -> Experiment:
    """Start (or resume), pause or stop. Assignment does not depend on the status, so a
    resumed experiment puts every user back in the variant they had."""
    if action not in _TRANSITIONS:
        raise InvalidInput({"status": f"Unknown action “{action}”: use start, pause or stop."})
    allowed, target = _TRANSITIONS[action]
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status not in allowed:
            raise InvalidInput(
                {
                    "status": f"A {experiment.get_status_display().lower()} experiment cannot be "
                    f"{ {'start': 'started', 'pause': 'paused', 'stop': 'stopped'}[action] }"
                    + (
                        "; a stopped experiment is final, create a new one to test again."
                        if experiment.status == Experiment.Status.STOPPED
                        else "."
                    )
                }
            )
        now = timezone.now()
        experiment.status = target
        fields = ["status", "updated_at"]
        if target == Experiment.Status.RUNNING and experiment.started_at is None:
            experiment.started_at = now
            fields.append("started_at")
        if target == Experiment.Status.STOPPED:
            experiment.stopped_at = now
            fields.append("stopped_at")
        experiment.save(update_fields=fields)
    return experiment


def start_experiment(*, experiment: Experiment) -> Experiment:
    return change_status(experiment=experiment, action="start")


def pause_experiment(*, experiment: Experiment) -> Experiment:
    return change_status(experiment=experiment, action="pause")


def stop_experiment(*, experiment: Experiment) -> Experiment:
    return change_status(experiment=experiment, action="stop")


# --------------------------------------------------------------------------- reads


def experiments_for_project(project: Project) -> list[Experiment]:
    """The project's experiments, newest first, with their variants and feeds (two queries)."""
    return list(Experiment.objects.filter(project=project).prefetch_related("variants__feed"))


def experiment_by_name(project: Project, name: str) -> Experiment:
    """The experiment (Experiment.DoesNotExist otherwise), variants prefetched."""
    return (
        Experiment.objects.filter(project=project, name=name)
        .prefetch_related("variants__feed")
        .get()
    )


def assigned_variant(experiment: Experiment, user_external_id: str) -> ExperimentVariant:
    """The variant the user belongs to (whatever the status: assignment is stable)."""
    variants = list(experiment.variants.all())
    index = assignment.assign(
        str(user_external_id),
        [v.name for v in variants],
        [v.weight for v in variants],
        experiment.salt,
    )
    return variants[index]


def in_target(experiment: Experiment, user_external_id: str | None) -> bool:
    """Whether the user is enrolled: every user when the experiment has no target, else the
    users whose stored attribute ``target_field`` is one of ``target_values`` (one query)."""
    if not experiment.target_field:
        return True
    if not user_external_id:
        return False
    attributes = (
        EndUser.objects.filter(project_id=experiment.project_id, external_id=user_external_id)
        .values_list("attributes", flat=True)
        .first()
    )
    value = (attributes or {}).get(experiment.target_field)
    wanted = {str(v) for v in experiment.target_values or []}
    if isinstance(value, list):
        return any(str(v) in wanted for v in value)
    return value is not None and str(value) in wanted


def target_description(experiment: Experiment) -> str:
    """Who is enrolled, in words: "every user" or "users whose SEGMENT is 0 or 2"."""
    if not experiment.target_field:
        return "every user"
    values = [str(v) for v in experiment.target_values or []]
    listed = values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    return f"users whose {experiment.target_field} is {listed}"


def target_size(experiment: Experiment) -> dict:
    """{"users": users in the target now, "total": users of the project} (two counts)."""
    total = EndUser.objects.filter(project_id=experiment.project_id).count()
    if not experiment.target_field:
        return {"users": total, "total": total}
    users = _users_with_value(
        experiment.project_id, experiment.target_field, list(experiment.target_values or [])
    ).count()
    return {"users": users, "total": total}


def control_variant(experiment: Experiment) -> ExperimentVariant:
    variants = list(experiment.variants.all())
    return next((v for v in variants if v.is_control), variants[0])


def resolve_feed(
    project: Project, name: str, user_external_id: str | None
) -> tuple[Feed, str | None]:
    """The feed to serve for ``name`` and the variant label to log with the response.

    * a running experiment's name: the feed of the user's variant and
      ``"<experiment>:<variant>"`` (log it in ``ServedRecommendation.variant``); a request
      without a user id gets the control feed and None (it cannot be assigned or attributed);
      so does a user outside the experiment's target (:func:`in_target`): not enrolled, served
      the control feed, not counted;
    * a draft, paused or stopped experiment's name: the control's feed and None;
    * a feed's name: that feed and None.

    FeedNotFound (with a message naming what exists) otherwise.
    """
    experiment = (
        Experiment.objects.filter(project=project, name=name)
        .prefetch_related("variants__feed")
        .first()
    )
    if experiment is not None and experiment.variants.all():
        if (
            experiment.status == Experiment.Status.RUNNING
            and user_external_id
            and in_target(experiment, user_external_id)
        ):
            variant = assigned_variant(experiment, user_external_id)
            return variant.feed, variant_label(experiment, variant)
        return control_variant(experiment).feed, None
    feed = Feed.objects.filter(project=project, name=name).first()
    if feed is not None:
        return feed, None
    feeds = sorted(Feed.objects.filter(project=project).values_list("name", flat=True))
    running = sorted(
        Experiment.objects.filter(project=project, status=Experiment.Status.RUNNING).values_list(
            "name", flat=True
        )
    )
    known = []
    if feeds:
        known.append(f"feeds: {', '.join(feeds)}")
    if running:
        known.append(f"running experiments: {', '.join(running)}")
    raise FeedNotFound(
        f"No feed or experiment named “{str(name)[:80]}” in this project "
        f"({'; '.join(known) if known else 'no feed yet: create one on the Feeds page'})."
    )


@dataclass
class VariantResult:
    variant: ExperimentVariant
    label: str
    responses: int = 0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    users: int = 0
    stats: engine_stats.VariantStats | None = None
    user_ids: set = field(default_factory=set, repr=False)


def experiment_results(experiment: Experiment) -> dict:
    """Per variant: responses, impressions (items shown), clicks and conversions (events
    carrying a response's recommendation id, on an item it showed, of the experiment's click
    or conversion type; each shown item counts at most once per response), users; the
    comparisons against the control; the observed split against the weights.

    Two queries; the join runs in Python over the experiment's responses.
    """
    variants = list(experiment.variants.all())
    by_label = {
        variant_label(experiment, v): VariantResult(v, variant_label(experiment, v))
        for v in variants
    }
    shown: dict[str, tuple[VariantResult, set]] = {}
    served = ServedRecommendation.objects.filter(
        project_id=experiment.project_id, variant__in=list(by_label)
    ).values_list("recommendation_id", "variant", "user_external_id", "items")
    for rec_id, label, user_id, items in served.iterator(chunk_size=2000):
        result = by_label[label]
        items = set(items or [])
        shown[rec_id] = (result, items)
        result.responses += 1
        result.impressions += len(items)
        result.user_ids.add(user_id)
    if shown:
        events = Interaction.objects.filter(
            project_id=experiment.project_id,
            event_type__in=[experiment.click_event, experiment.conversion_event],
        ).exclude(recommendation_id="")
        if experiment.started_at is not None:  # events cannot come before their response
            since = experiment.started_at - timedelta(days=1)
            events = events.filter(timestamp__gte=int(since.timestamp()))
        counted: set = set()
        for rec_id, item, event_type in events.values_list(
            "recommendation_id", "item__external_id", "event_type"
        ).iterator(chunk_size=5000):
            found = shown.get(rec_id)
            if found is None or item not in found[1] or (rec_id, item, event_type) in counted:
                continue
            counted.add((rec_id, item, event_type))
            if event_type == experiment.click_event:
                found[0].clicks += 1
            if event_type == experiment.conversion_event:
                found[0].conversions += 1
    rows = list(by_label.values())
    for row in rows:
        row.users = len(row.user_ids)
        row.user_ids = set()
        row.stats = engine_stats.VariantStats(
            name=row.variant.name,
            is_control=row.variant.is_control,
            impressions=row.impressions,
            clicks=row.clicks,
            conversions=row.conversions,
        )
    analysis = engine_stats.analyse([r.stats for r in rows])
    split = engine_stats.split_check([r.users for r in rows], [r.variant.weight for r in rows])
    return {
        "variants": rows,
        "analysis": analysis,
        "split": split,
        "target": {"description": target_description(experiment), **target_size(experiment)},
    }


# --------------------------------------------------------------------------- charts

_FONT = {"family": 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', "size": 12}
_COLORS = ["#6b7280", "#2757d6", "#e8772e", "#2a9d5c", "#c43d5a", "#7b55c7", "#1d9bb2", "#b8901c"]


def rate_chart(results: dict, metric: str) -> dict:
    """A Plotly bar chart of ``metric`` ("ctr" or "conversion") per variant, in percent, with
    the 95% Wilson interval as asymmetric error bars (JSON-serialisable figure dict)."""
    names, values, plus, minus, texts, colors = [], [], [], [], [], []
    for index, row in enumerate(results["variants"]):
        rate = row.stats.ctr if metric == "ctr" else row.stats.conversion
        suffix = " (control)" if row.variant.is_control and row.variant.name != "control" else ""
        names.append(row.variant.name + suffix)
        colors.append(_COLORS[0] if row.variant.is_control else _COLORS[1 + index % 7])
        if rate.rate is None:
            values.append(None)
            plus.append(0)
            minus.append(0)
            texts.append("no impressions")
            continue
        values.append(round(100 * rate.rate, 4))
        plus.append(round(100 * (rate.high - rate.rate), 4))
        minus.append(round(100 * (rate.rate - rate.low), 4))
        texts.append(f"{rate.successes:,} / {rate.trials:,}")
    label = "CTR" if metric == "ctr" else "Conversion rate"
    return {
        "data": [
            {
                "type": "bar",
                "x": names,
                "y": values,
                "marker": {"color": colors},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": plus,
                    "arrayminus": minus,
                    "color": "#111827",
                    "thickness": 1.5,
                    "width": 8,
                },
                "customdata": texts,
                "hovertemplate": "%{x}: %{y:.2f}% (%{customdata})<extra></extra>",
                "name": label,
            }
        ],
        "layout": {
            "height": 300,
            "margin": {"l": 56, "r": 16, "t": 12, "b": 48},
            "font": _FONT,
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "#fff",
            "yaxis": {
                "title": {"text": f"{label} (%)"},
                "gridcolor": "#eef0f4",
                "rangemode": "tozero",
            },
            "showlegend": False,
        },
    }


# --------------------------------------------------------------------------- simulated traffic


def _serve_experiment(experiment: Experiment, user_id: str, num_results: int):
    """One response of the experiment for ``user_id`` through the serving path.

    The feed endpoint's service (``feeds.feeds.serve``: resolves the variant with
    :func:`resolve_feed`, builds the page and logs it with the variant) when it is installed;
    otherwise the recommendations pipeline for the variant's feed's first ``campaign:<name>``
    slot, logged with the variant the same way. Returns (recommendation_id, item ids, label).
    """
    from feeds import recommending

    try:
        from feeds.feeds import serve
    except ImportError:  # pragma: no cover - the feed endpoint ships with this module
        serve = None
    if serve is not None:
        page = serve(experiment.project, experiment.name, user_id=user_id, page_size=num_results)
        return page.recommendation_id, [i["item_id"] for i in page.items], page.variant
    feed, label = resolve_feed(experiment.project, experiment.name, user_id)
    campaign = next(
        (
            s.source.split(":", 1)[1]
            for s in feed.slots.all()
            if s.source.startswith("campaign:") and s.source.split(":", 1)[1]
        ),
        None,
    )
    served = recommending.recommend(
        experiment.project, user_id=user_id, num_results=num_results, campaign=campaign
    )
    ServedRecommendation.objects.filter(recommendation_id=served.recommendation_id).update(
        variant=label or ""
    )
    return served.recommendation_id, [i["item_id"] for i in served.items], label


def simulate_traffic(
    *,
    experiment: Experiment,
    users: int,
    ctr_lift: float = 0.2,
    lift_variant: str | None = None,
    base_ctr: float = 0.05,
    purchase_rate: float = 0.2,
    num_results: int = 10,
    seed: int = 0,
    user_prefix: str = "sim",
    user_ids: list[str] | None = None,
) -> dict:
    """Serve ``users`` simulated users through the experiment and send back their events.

    Each user ``<prefix>-<seed>-<n>`` gets one response from their assigned variant's feed
    (logged with the variant), then clicks each shown item with probability ``base_ctr``
    (times ``1 + ctr_lift`` in ``lift_variant``, by default the first non-control variant) and
    buys a clicked item with probability ``purchase_rate``. Events are recorded through the
    same service as ``POST /api/v1/events``, carrying the response's recommendation id.
    ``user_ids`` serves those (existing) users instead of generated ones, e.g. to drive a
    targeted experiment, whose generated users have no attributes and are not enrolled.
    Returns per variant label: users, impressions, clicks, purchases; users outside the
    target are under ``"not enrolled"`` (served the control feed, no events sent).
    """
    import numpy as np

    from datasets.services import record_events

    experiment.refresh_from_db(fields=["status"])
    if experiment.status != Experiment.Status.RUNNING:
        raise InvalidInput(
            {
                "status": f"The experiment “{experiment.name}” is "
                f"{experiment.get_status_display().lower()}; start it before simulating traffic."
            }
        )
    if (user_ids is None and users < 1) or (user_ids is not None and not user_ids):
        raise InvalidInput({"users": "Simulate at least one user."})
    if not 0 < base_ctr < 1 or not 0 <= purchase_rate <= 1:
        raise InvalidInput({"base_ctr": "base_ctr must be in (0, 1) and purchase_rate in [0, 1]."})
    if base_ctr * (1 + ctr_lift) > 1 or ctr_lift <= -1:
        raise InvalidInput(
            {"ctr_lift": f"A lift of {ctr_lift} on a CTR of {base_ctr} is not a probability."}
        )
    variants = list(experiment.variants.all())
    if lift_variant is None:
        lift_variant = next((v.name for v in variants if not v.is_control), variants[0].name)
    elif lift_variant not in {v.name for v in variants}:
        raise InvalidInput(
            {
                "lift_variant": f"No variant “{lift_variant}”; the variants are "
                f"{', '.join(v.name for v in variants)}."
            }
        )
    lifted = variant_label(experiment, lift_variant)
    rng = np.random.default_rng(seed)
    summary: dict[str, dict] = {
        variant_label(experiment, v): {"users": 0, "impressions": 0, "clicks": 0, "purchases": 0}
        for v in variants
    }
    pending: list[dict] = []
    ids = list(user_ids) if user_ids is not None else None
    for n in range(len(ids) if ids is not None else users):
        user_id = ids[n] if ids is not None else f"{user_prefix}-{seed}-{n}"
        rec_id, items, label = _serve_experiment(experiment, user_id, num_results)
        if label is None:
            summary.setdefault(
                "not enrolled", {"users": 0, "impressions": 0, "clicks": 0, "purchases": 0}
            )["users"] += 1
            continue
        entry = summary[label]
        entry["users"] += 1
        entry["impressions"] += len(items)
        ctr = base_ctr * (1 + ctr_lift) if label == lifted else base_ctr
        for item in items:
            if rng.random() >= ctr:
                continue
            entry["clicks"] += 1
            event = {
                "user_id": user_id,
                "item_id": item,
                "recommendation_id": rec_id,
            }
            pending.append({**event, "event_type": experiment.click_event})
            if rng.random() < purchase_rate:
                entry["purchases"] += 1
                pending.append({**event, "event_type": experiment.conversion_event})
        if len(pending) >= 500:
            record_events(project=experiment.project, events=pending)
            pending = []
    if pending:
        record_events(project=experiment.project, events=pending)
    try:  # the served log may be buffered off the request path: write it before returning
        from feeds import served_log
    except ImportError:  # pragma: no cover - older layout, rows written inline
        served_log = None
    if served_log is not None and hasattr(served_log, "flush"):
        served_log.flush()
    return summary
