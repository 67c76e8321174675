"""The Filters and Promotions pages: marketers save filters and promote items with them.

Thin: parse the form, call feeds.services (writes) or feeds.promotions (reads), render.
Owners and editors change things; viewers look (and may use the live preview).
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from datasets.views import project_view
from feeds import promotions as reads
from feeds import services
from feeds.forms import PromotionForm, SavedFilterForm
from feeds.services import InvalidInput
from models_app.selectors import can_change_campaigns

PARAM_PREFIX = "param_"


def _can_change(request) -> bool:
    return can_change_campaigns(user=request.user, project=request.project)


def _require_change(request) -> None:
    if not _can_change(request):
        raise PermissionDenied(
            "Viewers can look at filters and promotions but not change them; ask an owner or "
            "editor of the project."
        )


def _param_values(data) -> dict:
    return {
        key[len(PARAM_PREFIX) :]: value
        for key, value in data.items()
        if key.startswith(PARAM_PREFIX) and key[len(PARAM_PREFIX) :]
    }


def _add_errors(form, error: InvalidInput) -> None:
    for field, message in error.errors.items():
        form.add_error(field if field in form.fields else None, message)


# --------------------------------------------------------------------------- filters


@project_view
def filter_list(request):
    saved = list(reads.saved_filters_for_project(request.project))
    for saved_filter in saved:
        saved_filter.preview = reads.preview_filter(
            request.project, saved_filter.expression, sample_size=0
        )
    return render(
        request,
        "feeds/filters.html",
        {"project": request.project, "filters": saved, "can_change": _can_change(request)},
    )


def _filter_page(request, saved_filter=None):
    can_change = _can_change(request)
    initial = {}
    if saved_filter is not None:
        initial = {
            "name": saved_filter.name,
            "description": saved_filter.description,
            "expression": saved_filter.expression,
        }
    form = SavedFilterForm(request.POST or None, initial=initial)
    status, filter_error = 200, None
    if request.method == "POST":
        _require_change(request)
        if form.is_valid():
            data = form.cleaned_data
            try:
                if saved_filter is None:
                    saved_filter = services.create_saved_filter(
                        project=request.project,
                        name=data["name"],
                        expression=data["expression"],
                        description=data["description"],
                        user=request.user,
                    )
                    messages.success(request, f"Filter “{saved_filter.name}” saved.")
                else:
                    services.update_saved_filter(
                        saved_filter=saved_filter,
                        name=data["name"],
                        expression=data["expression"],
                        description=data["description"],
                    )
                    messages.success(request, f"Filter “{saved_filter.name}” updated.")
                return redirect("filters", slug=request.project.slug)
            except InvalidInput as error:
                _add_errors(form, error)
                filter_error = error
        status = 400
    expression = form["expression"].value() or ""
    preview = reads.preview_filter(
        request.project, expression, values=_param_values(request.POST or {})
    )
    return render(
        request,
        "feeds/filter_form.html",
        {
            "project": request.project,
            "form": form,
            "saved_filter": saved_filter,
            "filter_error": filter_error,
            "preview": preview,
            "param_values": _param_values(request.POST or {}),
            "can_change": can_change,
            "fields": reads.item_field_names(request.project),
            "promotions": list(saved_filter.promotions.all()) if saved_filter else [],
        },
        status=status,
    )


@project_view
def filter_create(request):
    return _filter_page(request)


@project_view
def filter_edit(request, filter_id):
    return _filter_page(request, reads.saved_filter_in_project(request.project, filter_id))


@require_POST
@project_view
def filter_delete(request, filter_id):
    _require_change(request)
    saved_filter = reads.saved_filter_in_project(request.project, filter_id)
    try:
        services.delete_saved_filter(saved_filter=saved_filter)
    except InvalidInput as error:
        messages.error(request, str(error))
        return redirect("filter-edit", slug=request.project.slug, filter_id=saved_filter.pk)
    messages.success(request, f"Filter “{saved_filter.name}” deleted.")
    return redirect("filters", slug=request.project.slug)


@require_GET
@project_view
def filter_preview(request):
    """The live preview (htmx): how many items the expression lets through, and which."""
    values = _param_values(request.GET)
    preview = reads.preview_filter(
        request.project,
        request.GET.get("expression", ""),
        values=values,
        user_id=request.GET.get("preview_user", ""),
        item_id=request.GET.get("preview_item", ""),
    )
    shown = set(request.GET.getlist("shown_params"))
    return render(
        request,
        "feeds/_filter_preview.html",
        {
            "project": request.project,
            "preview": preview,
            "param_values": values,
            # Re-render the parameter inputs only when the expression's parameters changed,
            # so typing in one of them keeps its focus.
            "params_changed": shown != set(preview.parameters) or "shown_params" not in request.GET,
        },
    )


# --------------------------------------------------------------------------- promotions


@project_view
def promotion_list(request):
    promotions = reads.with_match_counts(
        request.project, reads.promotions_for_project(request.project)
    )
    return render(
        request,
        "feeds/promotions.html",
        {
            "project": request.project,
            "groups": reads.promotions_by_status(promotions),
            "has_filters": reads.saved_filters_for_project(request.project).exists(),
            "can_change": _can_change(request),
        },
    )


def _promotion_initial(promotion) -> dict:
    if promotion is None:
        return {"mode": PromotionForm.SHARE, "share_percent": 20}
    return {
        "name": promotion.name,
        "filter": promotion.filter_id,
        "mode": PromotionForm.POSITIONS if promotion.positions else PromotionForm.SHARE,
        "share_percent": round(promotion.share * 100, 2),
        "positions": ", ".join(str(p) for p in promotion.positions),
        "campaign": promotion.campaign_id,
        "starts_at": promotion.starts_at,
        "ends_at": promotion.ends_at,
        "reason": promotion.reason,
    }


def _promotion_page(request, promotion=None):
    form = PromotionForm(
        request.POST or None, project=request.project, initial=_promotion_initial(promotion)
    )
    status = 200
    if request.method == "POST":
        _require_change(request)
        if form.is_valid():
            data = form.cleaned_data
            arguments = {
                "name": data["name"],
                "saved_filter": data["filter"],
                "filter_values": _param_values(request.POST),
                "share": form.share(),
                "positions": form.positions_text(),
                "campaign": data["campaign"],
                "starts_at": data["starts_at"],
                "ends_at": data["ends_at"],
                "reason": data["reason"],
            }
            try:
                if promotion is None:
                    promotion = services.create_promotion(
                        project=request.project, user=request.user, **arguments
                    )
                    messages.success(request, f"Promotion “{promotion.name}” created.")
                else:
                    services.update_promotion(promotion=promotion, **arguments)
                    messages.success(request, f"Promotion “{promotion.name}” updated.")
                return redirect("promotions", slug=request.project.slug)
            except InvalidInput as error:
                _add_param_errors(form, error)
        status = 400
    selected = _selected_filter(request, form)
    values = (
        _param_values(request.POST)
        if request.method == "POST"
        else dict(promotion.filter_values)
        if promotion
        else {}
    )
    return render(
        request,
        "feeds/promotion_form.html",
        {
            "project": request.project,
            "form": form,
            "promotion": promotion,
            "params": _params_of(request.project, selected),
            "param_values": values,
            "param_errors": getattr(form, "param_errors", {}),
            "can_change": _can_change(request),
        },
        status=status,
    )


def _add_param_errors(form, error: InvalidInput) -> None:
    """Errors of the ``param_<NAME>`` inputs go next to them, the rest onto the form."""
    form.param_errors = {}
    for field, message in error.errors.items():
        if field.startswith(PARAM_PREFIX):
            form.param_errors[field[len(PARAM_PREFIX) :]] = message
        elif field == "filter_values":
            form.add_error("filter", message)
        elif field == "share":
            form.add_error("share_percent", message)
        else:
            form.add_error(field if field in form.fields else None, message)


def _selected_filter(request, form):
    value = str(form["filter"].value() or "")
    if not value.isdigit():
        return None
    return reads.saved_filters_for_project(request.project).filter(pk=int(value)).first()


def _params_of(project, saved_filter) -> tuple[str, ...]:
    if saved_filter is None:
        return ()
    try:
        return reads.compile_for_project(project, saved_filter.expression).parameters
    except Exception:  # noqa: BLE001 (a filter broken by a schema change: no inputs)
        return ()


@project_view
def promotion_create(request):
    return _promotion_page(request)


@project_view
def promotion_edit(request, promotion_id):
    return _promotion_page(request, reads.promotion_in_project(request.project, promotion_id))


@require_GET
@project_view
def promotion_params(request):
    """The parameter inputs of the picked saved filter (htmx, when the filter changes)."""
    selected = None
    value = request.GET.get("filter", "")
    if value.isdigit():
        selected = reads.saved_filters_for_project(request.project).filter(pk=int(value)).first()
    return render(
        request,
        "feeds/_promotion_params.html",
        {
            "params": _params_of(request.project, selected),
            "param_values": _param_values(request.GET),
            "param_errors": {},
            "selected_filter": selected,
        },
    )


@require_POST
@project_view
def promotion_toggle(request, promotion_id):
    _require_change(request)
    promotion = reads.promotion_in_project(request.project, promotion_id)
    services.set_promotion_active(promotion=promotion, active=not promotion.is_active)
    state = "resumed" if promotion.is_active else "paused"
    messages.success(request, f"Promotion “{promotion.name}” {state}.")
    return redirect("promotions", slug=request.project.slug)


@require_POST
@project_view
def promotion_delete(request, promotion_id):
    _require_change(request)
    promotion = reads.promotion_in_project(request.project, promotion_id)
    services.delete_promotion(promotion=promotion)
    messages.success(request, f"Promotion “{promotion.name}” deleted.")
    return redirect("promotions", slug=request.project.slug)
