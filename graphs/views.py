"""The Segments pages: start graph analyses and clustering runs, follow them, read their quality
charts, save a clustering as a user field, preview the follow source."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets.views import project_view
from graphs import charts, selectors, services
from graphs.models import AnalysisRun, ClusteringRun, GraphRun
from models_app import selectors as model_selectors

KINDS = {"graph": GraphRun, "clustering": ClusteringRun}
FOLLOW_PREVIEW = 10


def _can_change(request) -> bool:
    return model_selectors.can_change_campaigns(user=request.user, project=request.project)


def _require_change(request) -> None:
    if not _can_change(request):
        raise PermissionDenied(
            "Viewers can look at segments but not start runs or save segments; ask an owner or "
            "editor."
        )


def _run(request, kind: str, run_id: int) -> AnalysisRun:
    if kind not in KINDS:
        raise Http404("No such kind of run.")
    if kind == "graph":
        run = selectors.graph_run_in_project(request.project, run_id)
    else:
        run = selectors.clustering_run_in_project(request.project, run_id)
    if run.status == AnalysisRun.Status.RUNNING:  # is its worker still alive?
        services.fail_stale_runs(request.project)
        run.refresh_from_db()
    return run


def _run_url(run) -> str:
    name = "graph-run" if isinstance(run, GraphRun) else "clustering-run"
    return redirect(name, slug=run.project.slug, run_id=run.pk)


def _clustering_form(request) -> tuple[str, dict]:
    method = request.POST.get("method", "")
    params = {
        name: request.POST.get(name, "").strip()
        for name in ("k_min", "k_max", "goal_event", "resolution", "seed")
    }
    return method, params


@project_view
def segments(request):
    project = request.project
    services.fail_stale_runs(project)
    can_change = _can_change(request)
    status = 200
    graph_form = {**services.GRAPH_DEFAULTS}
    clustering_form = {
        "method": ClusteringRun.Method.KMEANS_BEHAVIOUR,
        **services.CLUSTERING_DEFAULTS,
    }
    if request.method == "POST":
        _require_change(request)
        action = request.POST.get("action")
        try:
            if action == "graph":
                graph_form = {
                    "betweenness_samples": request.POST.get("betweenness_samples", "").strip()
                    or services.GRAPH_DEFAULTS["betweenness_samples"],
                    "seed": request.POST.get("seed", "").strip() or 0,
                    "measure_effect": bool(request.POST.get("measure_effect")),
                }
                run = services.start_graph_run(
                    project=project, params=graph_form, user=request.user
                )
                messages.success(request, f"Graph analysis #{run.pk} queued.")
                return redirect("graph-run", slug=project.slug, run_id=run.pk)
            if action == "clustering":
                method, params = _clustering_form(request)
                clustering_form = {"method": method, **{**services.CLUSTERING_DEFAULTS, **{
                    k: v for k, v in params.items() if v}}}  # fmt: skip
                run = services.start_clustering_run(
                    project=project, method=method, params=params, user=request.user
                )
                messages.success(request, f"Clustering run #{run.pk} queued.")
                return redirect("clustering-run", slug=project.slug, run_id=run.pk)
            raise ValueError("Choose what to start: a graph analysis or a clustering run.")
        except ValueError as exc:
            messages.error(request, str(exc))
            status = 400
    relations = selectors.relation_count(project)
    follow_user = request.GET.get("follow_user", "").strip()
    follow_preview = None
    if follow_user:
        follow_preview = services.followed_users_liked(project, follow_user, FOLLOW_PREVIEW)
    return render(
        request,
        "graphs/segments.html",
        {
            "project": project,
            "can_change": can_change,
            "relations": relations,
            "interactions": selectors.interaction_count(project),
            "graph_runs": selectors.recent_graph_runs(project),
            "clustering_runs": selectors.recent_clustering_runs(project),
            "methods": ClusteringRun.Method.choices,
            "event_types": model_selectors.event_types_in(project),
            "graph_form": graph_form,
            "clustering_form": clustering_form,
            "segment_fields": sorted(selectors.segment_fields(project)),
            "follow_user": follow_user,
            "follow_preview": follow_preview,
        },
        status=status,
    )


def _chart(element_id: str, title: str, caption: str, figure: dict, wide: bool = False) -> dict:
    return {
        "element_id": element_id,
        "title": title,
        "caption": caption,
        "figure": figure,
        "wide": wide,
    }


def _clustering_charts(run: ClusteringRun) -> list[dict]:
    quality = run.quality or {}
    names = services.segment_names(run)
    out = []
    if quality.get("silhouette_by_k"):
        out.append(
            _chart(
                "chart-silhouette-k",
                "Silhouette against k",
                f"k-means for every k of the range; the k with the best mean silhouette is "
                f"chosen (k = {run.k}). Higher is better: users closer to their own segment than "
                "to the next one.",
                charts.silhouette_by_k_chart(quality["silhouette_by_k"], run.k),
            )
        )
    if quality.get("modularity_by_k"):
        out.append(
            _chart(
                "chart-modularity-k",
                "Modularity against k",
                f"Spectral clustering for every k of the range; the k with the best modularity "
                f"is chosen (k = {run.k}).",
                charts.silhouette_by_k_chart(quality["modularity_by_k"], run.k, "modularity"),
            )
        )
    if quality.get("silhouettes"):
        out.append(
            _chart(
                "chart-silhouette-clusters",
                "Silhouette per segment",
                "Each band is a segment, its users sorted by silhouette; the dashed line is the "
                "mean. Bars below 0 are users closer to another segment than to their own.",
                charts.silhouette_plot(quality["silhouettes"], run.silhouette, names),
            )
        )
    if quality.get("sweep"):
        out.append(
            _chart(
                "chart-modularity",
                "Modularity against resolution",
                f"Louvain at each resolution. This run: resolution "
                f"{quality.get('resolution', 1):g}, modularity {run.modularity:.3f}. Modularity "
                "above about 0.3 means clear communities.",
                charts.modularity_chart(quality["sweep"], quality.get("resolution")),
            )
        )
    if run.profiles:
        out.append(
            _chart(
                "chart-sizes",
                "Segment sizes",
                "Users per segment"
                + (
                    f"; {quality['unclustered']} users could not be placed (no edges, or alone)."
                    if quality.get("unclustered")
                    else "."
                ),
                charts.sizes_chart(
                    [p["size"] for p in run.profiles], [p["name"] for p in run.profiles]
                ),
            )
        )
    view = quality.get("graph_view")
    if view and view.get("nodes"):
        out.append(
            _chart(
                "chart-graph",
                "The largest communities",
                f"A sample of {view['shown']} of {view['of']} users of the largest segments and "
                "the follows between them, laid out so that connected users are close.",
                charts.graph_view_chart(view, names),
                wide=True,
            )
        )
    return out


def _graph_charts(run: GraphRun) -> list[dict]:
    summary = run.summary or {}
    out = []
    if summary.get("top_pagerank"):
        out.append(
            _chart(
                "chart-pagerank",
                "Top users by PageRank",
                "Followed by users who are themselves followed.",
                charts.top_users_chart(summary["top_pagerank"], "pagerank"),
            )
        )
        out.append(
            _chart(
                "chart-betweenness",
                "Top users by betweenness",
                "The bridges: many shortest paths between other users pass through them.",
                charts.top_users_chart(summary["top_betweenness"], "betweenness"),
            )
        )
    view = summary.get("graph_view")
    if view and view.get("nodes"):
        out.append(
            _chart(
                "chart-graph",
                "The largest communities (Louvain)",
                f"A sample of {view['shown']} of {view['of']} users with edges, coloured by "
                "Louvain community, laid out so that connected users are close.",
                charts.graph_view_chart(
                    view, {str(n[3]): f"Community {n[3]}" for n in view["nodes"]}
                ),
                wide=True,
            )
        )
    effect = summary.get("effect") or {}
    if effect.get("all_users"):
        out.append(
            _chart(
                "chart-effect",
                "Does the follow source or segment-affinity help?",
                f"{effect['protocol']}, {effect['test_users']} test users. NDCG@10 and the share "
                "of recommended items that followed users interacted with.",
                charts.effect_chart(effect["all_users"]),
                wide=True,
            )
        )
    return out


def _context(request, run) -> dict:
    context = {
        "project": request.project,
        "run": run,
        "kind": run.KIND,
        "progress": services.read_progress(run),
        "log": services.read_log(run),
        "can_change": _can_change(request),
    }
    if run.status == AnalysisRun.Status.SUCCEEDED:
        if isinstance(run, GraphRun):
            context["charts"] = _graph_charts(run)
            effect = (run.summary or {}).get("effect") or {}
            followed = {row["name"]: row for row in effect.get("followed_users", [])}
            context["effect_rows"] = [
                {"all": row, "followed": followed.get(row["name"], {})}
                for row in effect.get("all_users", [])
            ]
        else:
            context["charts"] = _clustering_charts(run)
    return context


@project_view
def graph_run(request, run_id):
    run = _run(request, "graph", run_id)
    return render(request, "graphs/graph_run.html", _context(request, run))


@project_view
def clustering_run(request, run_id):
    run = _run(request, "clustering", run_id)
    context = _context(request, run)
    context["default_field"] = services.DEFAULT_SEGMENT_FIELD
    return render(request, "graphs/clustering_run.html", context)


@project_view
def run_progress(request, kind, run_id):
    """The htmx-polled panel; when the run has finished, reload the whole page."""
    run = _run(request, kind, run_id)
    response = render(request, "graphs/_progress.html", _context(request, run))
    if request.GET.get("watching") and run.is_finished:
        response["HX-Refresh"] = "true"
    return response


@require_POST
@project_view
def run_cancel(request, kind, run_id):
    _require_change(request)
    run = _run(request, kind, run_id)
    services.request_cancel(run)
    messages.info(request, "Cancelling; nothing from this run will be kept.")
    return _run_url(run)


@require_POST
@project_view
def run_retry(request, kind, run_id):
    _require_change(request)
    run = _run(request, kind, run_id)
    try:
        new = services.retry(run, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return _run_url(run)
    messages.success(request, f"Run #{new.pk} queued.")
    return _run_url(new)


@require_POST
@project_view
def save_segment(request, run_id):
    _require_change(request)
    run = _run(request, "clustering", run_id)
    field = request.POST.get("field", "").strip() or services.DEFAULT_SEGMENT_FIELD
    try:
        written = services.save_segment_field(run=run, field=field, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Saved: {written:,} users now have {field} = their segment number. Use it in filters "
            f'(e.g. Users.{field} = "0"), promotions and recipes.',
        )
    return _run_url(run)
