"""Writes of the marketer tools: saved filters and promotions.

Every function checks its input and raises :class:`InvalidInput` with one message per wrong
field (what is wrong and what to do), so the pages can show each message under its field.
Reads are in ``feeds/promotions.py``.
"""

from __future__ import annotations

import math
import re

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from datasets.models import Project
from feeds.catalog import catalog_for
from feeds.engine.filters import FilterError
from feeds.models import Promotion, SavedFilter
from feeds.promotions import compile_for_project
from models_app.models import Campaign

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_NAME_LENGTH = 60
MAX_PROMOTION_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 200
MAX_REASON_LENGTH = 200
MAX_SHARE = 0.5
DEFAULT_SHARE = 0.2
# Positions are 1-based slots of a response; responses have at most 500 items.
MAX_POSITION = 500
MAX_POSITIONS = 50


class InvalidInput(ValueError):
    """Input that cannot be saved; ``errors`` maps each wrong field to a message.

    For a filter expression that does not compile, ``filter_error`` is the FilterError and
    ``pointer`` the expression's line with a ``^`` under the mistake.
    """

    def __init__(self, errors: dict[str, str], filter_error: FilterError | None = None, pointer=""):
        super().__init__(" ".join(errors.values()))
        self.errors = errors
        self.filter_error = filter_error
        self.pointer = pointer


# --------------------------------------------------------------------------- saved filters


def _check_filter_name(project: Project, name: str, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput({"name": "Give the filter a name, e.g. in-stock-shoes."})
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise InvalidInput(
            {
                "name": f"“{name[:80]}” is not a valid name: use lowercase letters, digits, "
                f"hyphens and underscores (up to {MAX_NAME_LENGTH} characters), starting with "
                "a letter or digit, e.g. in-stock-shoes. Requests refer to the filter by it."
            }
        )
    taken = SavedFilter.objects.filter(project=project, name=name).exclude(pk=exclude_pk)
    if taken.exists():
        raise InvalidInput(
            {"name": f"This project already has a filter named “{name}”; choose another name."}
        )
    return name


def _check_expression(project: Project, expression: str):
    expression = (expression or "").strip()
    if not expression:
        raise InvalidInput(
            {
                "expression": "Write the filter expression, e.g. "
                "EXCLUDE ItemID WHERE Items.in_stock = false"
            }
        )
    try:
        return expression, compile_for_project(project, expression)
    except FilterError as error:
        pointer = error.pointer(expression) if error.position is not None else ""
        raise InvalidInput({"expression": error.message}, error, pointer) from None


def _check_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            {
                "description": f"Keep the description to {MAX_DESCRIPTION_LENGTH} characters "
                f"(it has {len(description)})."
            }
        )
    return description


def create_saved_filter(
    *, project: Project, name: str, expression: str, description: str = "", user=None
) -> SavedFilter:
    """Save a filter expression under ``name`` after compiling it against the project's fields."""
    name = _check_filter_name(project, name)
    expression, _flt = _check_expression(project, expression)
    description = _check_description(description)
    try:
        with transaction.atomic():
            return SavedFilter.objects.create(
                project=project,
                name=name,
                expression=expression,
                description=description,
                created_by=user,
            )
    except IntegrityError:  # a concurrent save took the name
        raise InvalidInput({"name": f"A filter named “{name}” was just created."}) from None


def update_saved_filter(
    *, saved_filter: SavedFilter, name: str, expression: str, description: str = ""
) -> SavedFilter:
    """Change a saved filter. Refused when a promotion using it lacks a new parameter's value."""
    project = saved_filter.project
    name = _check_filter_name(project, name, exclude_pk=saved_filter.pk)
    expression, flt = _check_expression(project, expression)
    description = _check_description(description)
    for promotion in saved_filter.promotions.all():
        missing = [p for p in flt.parameters if not _has_value(promotion.filter_values, p)]
        if missing:
            names = ", ".join(f"${p}" for p in missing)
            raise InvalidInput(
                {
                    "expression": f"The promotion “{promotion.name}” uses this filter but has no "
                    f"value for {names}; give it one on the promotion first, or leave the "
                    "parameter out."
                }
            )
    saved_filter.name, saved_filter.expression = name, expression
    saved_filter.description = description
    try:
        with transaction.atomic():
            saved_filter.save()
    except IntegrityError:
        raise InvalidInput({"name": f"A filter named “{name}” was just created."}) from None
    return saved_filter


def delete_saved_filter(*, saved_filter: SavedFilter) -> None:
    """Delete a filter; refused while promotions use it (they would lose their items)."""
    users = list(saved_filter.promotions.values_list("name", flat=True))
    if users:
        raise InvalidInput({"filter": _in_use_message(saved_filter, users)})
    try:
        with transaction.atomic():
            saved_filter.delete()
    except ProtectedError:  # a promotion started using it meanwhile
        users = list(saved_filter.promotions.values_list("name", flat=True))
        raise InvalidInput({"filter": _in_use_message(saved_filter, users)}) from None


def _in_use_message(saved_filter: SavedFilter, users: list[str]) -> str:
    quoted = ", ".join(f"“{name}”" for name in users)
    noun = "promotion" if len(users) == 1 else "promotions"
    return (
        f"The filter “{saved_filter.name}” cannot be deleted: the {noun} {quoted} use it. "
        f"Delete the {noun} or switch them to another filter first."
    )


# --------------------------------------------------------------------------- promotions


def _has_value(values, name: str) -> bool:
    if not isinstance(values, dict):
        return False
    value = values.get(name)
    if isinstance(value, list):
        return bool(value)
    return value is not None and str(value).strip() != ""


def parse_positions(text) -> list[int]:
    """``"1, 5, 9"`` (or a list) -> ``[1, 5, 9]``; raises InvalidInput saying what is wrong."""
    if isinstance(text, list | tuple):
        parts = [str(p).strip() for p in text]
    else:
        parts = [p.strip() for p in str(text or "").replace(";", ",").split(",")]
    parts = [p for p in parts if p]
    positions = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise InvalidInput(
                {
                    "positions": f"Positions are whole numbers from 1 (the first slot) upwards, "
                    f"separated by commas, e.g. 1, 5, 10; “{part[:20]}” is not."
                }
            )
        positions.append(int(part))
    if len(set(positions)) != len(positions):
        raise InvalidInput({"positions": "Each position may appear only once."})
    if positions and max(positions) > MAX_POSITION:
        raise InvalidInput(
            {
                "positions": f"Responses have at most {MAX_POSITION} items; position "
                f"{max(positions)} is past the end."
            }
        )
    if len(positions) > MAX_POSITIONS:
        raise InvalidInput({"positions": f"Give at most {MAX_POSITIONS} positions."})
    return sorted(positions)


def _clean_promotion(
    *,
    project: Project,
    name: str,
    saved_filter: SavedFilter | None,
    filter_values: dict | None,
    share,
    positions,
    campaign: Campaign | None,
    starts_at,
    ends_at,
    reason: str,
    exclude_pk=None,
) -> dict:
    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Give the promotion a name, e.g. Summer sale."
    elif len(name) > MAX_PROMOTION_NAME_LENGTH:
        errors["name"] = f"Keep the name to {MAX_PROMOTION_NAME_LENGTH} characters."
    elif Promotion.objects.filter(project=project, name=name).exclude(pk=exclude_pk).exists():
        errors["name"] = f"This project already has a promotion named “{name}”."
    values = {}
    if saved_filter is None or saved_filter.project_id != project.pk:
        errors["filter"] = "Pick the saved filter that selects the promoted items."
    else:
        values = _clean_values(project, saved_filter, filter_values or {}, errors)
    try:
        position_list = parse_positions(positions)
    except InvalidInput as error:
        errors.update(error.errors)
        position_list = []
    share = _as_share(share)
    if not position_list:
        if share is None:
            errors["share"] = (
                "Give the share of slots (more than 0% and at most 50%) or explicit positions."
            )
        elif not 0 < share <= MAX_SHARE:
            errors["share"] = (
                f"The share of slots must be more than 0% and at most {MAX_SHARE:.0%} "
                f"(got {share * 100:g}%): promotions sit on top of relevance, they do not "
                "replace it."
            )
    elif share is None or not 0 < share <= MAX_SHARE:
        share = DEFAULT_SHARE  # unused while positions are given
    if campaign is not None and campaign.project_id != project.pk:
        errors["campaign"] = "That campaign belongs to another project."
    if starts_at and ends_at and ends_at <= starts_at:
        errors["ends_at"] = (
            f"The end ({ends_at:%Y-%m-%d %H:%M}) must be after the start "
            f"({starts_at:%Y-%m-%d %H:%M})."
        )
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_LENGTH:
        errors["reason"] = f"Keep the reason to {MAX_REASON_LENGTH} characters."
    if errors:
        raise InvalidInput(errors)
    return {
        "name": name,
        "filter": saved_filter,
        "filter_values": values,
        "share": share,
        "positions": position_list,
        "campaign": campaign,
        "starts_at": starts_at or None,
        "ends_at": ends_at or None,
        "reason": reason,
    }


def _as_share(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        share = float(value)
    except (TypeError, ValueError):
        return math.nan
    return share


def _clean_values(project, saved_filter: SavedFilter, raw: dict, errors: dict) -> dict:
    """The filter's parameter values (strings as typed); every parameter needs one."""
    try:
        flt = compile_for_project(project, saved_filter.expression)
    except FilterError as error:
        errors["filter"] = (
            f"The filter “{saved_filter.name}” no longer works with the catalogue: {error}. "
            "Fix it on the Filters page first."
        )
        return {}
    values = {}
    for parameter in flt.parameters:
        value = raw.get(parameter)
        if not _has_value(raw, parameter):
            errors[f"param_{parameter}"] = (
                f"The filter uses ${parameter}: give it a value, e.g. Shoes, Bags "
                "(several values separated by commas)."
            )
            continue
        values[parameter] = value.strip() if isinstance(value, str) else value
    if values and not any(key.startswith("param_") for key in errors):
        catalog = catalog_for(project)
        try:
            flt.mask(
                catalog.table, values=values, current_item={} if flt.uses_current_item else None
            )
        except FilterError as error:
            errors["filter_values"] = str(error)
    return values


def create_promotion(
    *,
    project: Project,
    name: str,
    saved_filter: SavedFilter | None,
    filter_values: dict | None = None,
    share=0.2,
    positions=None,
    campaign: Campaign | None = None,
    starts_at=None,
    ends_at=None,
    reason: str = "",
    is_active: bool = True,
    user=None,
) -> Promotion:
    """A promotion: items of ``saved_filter`` get ``share`` of the slots (or ``positions``)."""
    cleaned = _clean_promotion(
        project=project,
        name=name,
        saved_filter=saved_filter,
        filter_values=filter_values,
        share=share,
        positions=positions,
        campaign=campaign,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
    )
    try:
        with transaction.atomic():
            return Promotion.objects.create(
                project=project, is_active=is_active, created_by=user, **cleaned
            )
    except IntegrityError:
        raise InvalidInput({"name": "A promotion with this name was just created."}) from None


def update_promotion(
    *,
    promotion: Promotion,
    name: str,
    saved_filter: SavedFilter | None,
    filter_values: dict | None = None,
    share=0.2,
    positions=None,
    campaign: Campaign | None = None,
    starts_at=None,
    ends_at=None,
    reason: str = "",
) -> Promotion:
    cleaned = _clean_promotion(
        project=promotion.project,
        name=name,
        saved_filter=saved_filter,
        filter_values=filter_values,
        share=share,
        positions=positions,
        campaign=campaign,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        exclude_pk=promotion.pk,
    )
    for key, value in cleaned.items():
        setattr(promotion, key, value)
    try:
        with transaction.atomic():
            promotion.save()
    except IntegrityError:
        raise InvalidInput({"name": "A promotion with this name was just created."}) from None
    return promotion


def set_promotion_active(*, promotion: Promotion, active: bool) -> Promotion:
    """Pause (``active=False``) or resume a promotion; serving notices at the next request."""
    promotion.is_active = active
    promotion.save(update_fields=["is_active", "updated_at"])
    return promotion


def delete_promotion(*, promotion: Promotion) -> None:
    promotion.delete()
