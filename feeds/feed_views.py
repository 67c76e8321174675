"""The Feeds pages: list and create feeds, edit a feed's slots (htmx) and settings, and
preview a feed for one user exactly as the API serves it (docs/feeds.md).

Thin: parse, call feeds.feeds (writes and reads), render. Owners and editors change feeds;
viewers look and preview.
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from datasets.views import project_view
from feeds import feeds, selectors
from feeds import promotions as reads
from feeds.feeds import InvalidFeed
from feeds.models import FeedSlot
from feeds.recommending import ServingError
from feeds.views import _can_change, _param_values, _params_of, _require_change

SLOT_ACTIONS = {"add", "update", "remove", "up", "down"}


def _feed(request, name):
    try:
        return feeds.feed_in_project(request.project, name)
    except feeds.FeedNotFound as exc:
        raise Http404(exc.message) from None


@project_view
def feed_list(request):
    can_change = _can_change(request)
    errors, values = {}, {}
    if request.method == "POST":
        _require_change(request)
        values = request.POST
        try:
            feed = feeds.create_feed(
                project=request.project,
                name=values.get("name", ""),
                description=values.get("description", ""),
                slots=[(values.get("source", ""), values.get("count", "1"))],
                fallback_source=values.get("fallback_source", ""),
                user=request.user,
            )
        except InvalidFeed as exc:
            errors = exc.errors
        else:
            messages.success(request, f"Feed “{feed.name}” created: add its other slots below.")
            return redirect("feed-edit", slug=request.project.slug, name=feed.name)
    return render(
        request,
        "feeds/feed_list.html",
        {
            "project": request.project,
            "feeds": feeds.feeds_for_project(request.project),
            "sources": feeds.source_choices(request.project),
            "can_change": can_change,
            "errors": errors,
            "values": values,
        },
        status=400 if errors else 200,
    )


def _edit_context(request, feed, errors=None, values=None):
    saved_filters = list(reads.saved_filters_for_project(request.project).order_by("name"))
    selected = feed.filter
    param_values = feed.filter_values or {}
    if values is not None:
        picked = values.get("filter", "")
        selected = next((f for f in saved_filters if str(f.pk) == picked), None)
        param_values = _param_values(values)
    return {
        "project": request.project,
        "feed": feed,
        "slots": list(feed.slots.order_by("position")),
        "sources": feeds.source_choices(request.project),
        "source_values": [v for v, _ in feeds.source_choices(request.project)],
        "saved_filters": saved_filters,
        "selected_filter": selected,
        "params": _params_of(request.project, selected),
        "param_values": param_values,
        "errors": errors or {},
        "excluded_text": values.get("excluded_items", "")
        if values is not None
        else "\n".join(feed.excluded_items or []),
        "pinned_text": values.get("pinned_items", "")
        if values is not None
        else feeds.pinned_text(feed),
        "fallback": values.get("fallback_source", "")
        if values is not None
        else feed.fallback_source,
        "exclude_seen": (values.get("exclude_seen") == "on")
        if values is not None
        else feed.exclude_seen,
        "description": values.get("description", "") if values is not None else feed.description,
        "can_change": _can_change(request),
        "followed_available": feeds.followed_available(),
    }


@project_view
def feed_edit(request, name):
    feed = _feed(request, name)
    if request.method == "POST":
        _require_change(request)
        data = request.POST
        picked = data.get("filter", "")
        saved_filter = None
        if picked:
            saved_filter = (
                reads.saved_filters_for_project(request.project)
                .filter(pk=int(picked) if picked.isdigit() else -1)
                .first()
            )
        try:
            if picked and saved_filter is None:
                raise InvalidFeed({"filter": "That saved filter no longer exists."})
            feeds.update_feed(
                feed=feed,
                description=data.get("description", ""),
                fallback_source=data.get("fallback_source", ""),
                saved_filter=saved_filter,
                filter_values=_param_values(data),
                exclude_seen=data.get("exclude_seen") == "on",
                excluded_text=data.get("excluded_items", ""),
                pinned=data.get("pinned_items", ""),
            )
        except InvalidFeed as exc:
            context = _edit_context(request, feed, exc.errors, data)
            return render(request, "feeds/feed_edit.html", context, status=400)
        messages.success(request, f"Feed “{feed.name}” saved.")
        return redirect("feed-edit", slug=request.project.slug, name=feed.name)
    return render(request, "feeds/feed_edit.html", _edit_context(request, feed))


@require_POST
@project_view
def feed_slots(request, name):
    """The slot table's htmx actions: add, update, remove, move up or down."""
    _require_change(request)
    feed = _feed(request, name)
    action = request.POST.get("action", "")
    error = None
    try:
        if action not in SLOT_ACTIONS:
            raise InvalidFeed({"slots": f"Unknown action “{action[:20]}”."})
        if action == "add":
            feeds.add_slot(
                feed=feed,
                source=request.POST.get("source", ""),
                count=request.POST.get("count", "1"),
            )
        else:
            slot_id = request.POST.get("slot", "")
            slot = get_object_or_404(
                FeedSlot, feed=feed, pk=int(slot_id) if slot_id.isdigit() else -1
            )
            if action == "update":
                feeds.update_slot(
                    slot=slot,
                    source=request.POST.get(f"source_{slot.pk}", slot.source),
                    count=request.POST.get(f"count_{slot.pk}", slot.count),
                )
            elif action == "remove":
                feeds.remove_slot(slot=slot)
            else:
                feeds.move_slot(slot=slot, offset=-1 if action == "up" else 1)
    except InvalidFeed as exc:
        error = "; ".join(
            f"{k.capitalize()}: {v}" if k.startswith("slot ") else v for k, v in exc.errors.items()
        )
    sources = feeds.source_choices(request.project)
    return render(
        request,
        "feeds/_feed_slots.html",
        {
            "project": request.project,
            "feed": feed,
            "slots": list(feed.slots.order_by("position")),
            "sources": sources,
            "source_values": [v for v, _ in sources],
            "can_change": True,
            "slot_error": error,
        },
    )


@require_GET
@project_view
def feed_params(request):
    """The parameter inputs of the picked saved filter (htmx, when the filter changes)."""
    value = request.GET.get("filter", "")
    selected = None
    if value.isdigit():
        selected = reads.saved_filters_for_project(request.project).filter(pk=int(value)).first()
    return render(
        request,
        "feeds/_feed_params.html",
        {
            "params": _params_of(request.project, selected),
            "param_values": _param_values(request.GET),
            "errors": {},
        },
    )


@require_POST
@project_view
def feed_delete(request, name):
    _require_change(request)
    feed = _feed(request, name)
    try:
        feeds.delete_feed(feed=feed)
    except InvalidFeed as exc:
        messages.error(request, str(exc))
        return redirect("feed-edit", slug=request.project.slug, name=feed.name)
    messages.success(request, f"Feed “{feed.name}” deleted.")
    return redirect("feeds", slug=request.project.slug)


@require_GET
@project_view
def feed_users(request):
    """Autocomplete options of user ids (htmx)."""
    found = feeds.search_users(request.project, request.GET.get("user_id", ""))
    return render(request, "feeds/_feed_users.html", {"users": found})


def _column(request, feed, user_id, cursor):
    """One feed's page for the preview, served like the API serves it (without logging)."""
    column = {"feed": feed, "result": None, "error": None}
    try:
        result = feeds.serve(
            request.project,
            feed.name,
            user_id=user_id or None,
            cursor=cursor or None,
            page_size=feeds.check_page_size(request.GET.get("page_size")),
            log=False,
            feed=feed,
        )
    except ServingError as exc:
        column["error"] = exc.message
        return column
    details = feeds.item_details(request.project, [i["item_id"] for i in result.items])
    column["result"] = result
    column["items"] = [{**i, **details.get(i["item_id"], {})} for i in result.items]
    if result.items:
        column["first"], column["last"] = result.items[0]["rank"], result.items[-1]["rank"]
    return column


@require_GET
@project_view
def feed_preview(request, name):
    feed = _feed(request, name)
    user_id = request.GET.get("user_id", "").strip()[:256]
    compare_name = request.GET.get("compare", "").strip()
    columns = [_column(request, feed, user_id, request.GET.get("cursor", ""))]
    compare = None
    if compare_name and compare_name != feed.name:
        compare = _feed(request, compare_name)
        columns.append(_column(request, compare, user_id, request.GET.get("compare_cursor", "")))
    return render(
        request,
        "feeds/feed_preview.html",
        {
            "project": request.project,
            "feed": feed,
            "user_id": user_id,
            "compare": compare,
            "other_feeds": [n for n in feeds.feed_names(request.project) if n != feed.name],
            "columns": columns,
            "history": feeds.user_recent_history(request.project, user_id),
            "segment": feeds.user_segment(request.project, user_id) if user_id else None,
            "attributes": sorted(
                (selectors.user_attributes(request.project, user_id) or {}).items()
            ),
            "known_user": feeds.user_exists(request.project, user_id),
            "page_size": request.GET.get("page_size", ""),
            "cursor": request.GET.get("cursor", ""),
            "compare_cursor": request.GET.get("compare_cursor", ""),
        },
    )
