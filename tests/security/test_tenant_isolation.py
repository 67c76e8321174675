"""Tenant isolation: every route of the site, walked as strangers, must give away nothing.

Project A (owned by alice) gets one object of every kind that has a URL. The URL patterns are
enumerated from Django's resolver, each pattern's kwargs are filled with project A's objects
(a route whose kwargs we cannot fill, or that is not classified, fails the test, so new routes
are covered automatically) and every route is requested with GET and POST as:

1. an anonymous visitor: redirect to the login page (pages) or 401/403 (API), never data;
2. mallory, a member of project B only: 404/403/405, nothing of A in the body, and nothing of
   A changed by her POSTs; again with project B's slug and A's object ids in the URL, and with
   A's ids in B's forms and queries (IDOR);
3. project B's API key (Bearer on /api/v1/, SigV4-signed on /personalize/) naming A's
   campaign, feed, filter, item, user and ARNs: the answer must be exactly the one for names
   that exist nowhere, so not even the existence of A's resources shows;
4. alice, the owner, as the control that the walk really reaches the views: 200/302 for GETs,
   and a POST (rolled back) that gets past the object lookup for POST-only routes; A's own
   key gets A's recommendations.

Three more tests show the walk can fail (a membership check or a project filter taken out by
monkeypatching is noticed) and one that the serving caches keep projects with the same
campaign, feed and item names apart. Run with
``pytest tests/security/test_tenant_isolation.py`` (documented in docs/operations.md).
"""

import re
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.db import models, transaction
from django.shortcuts import get_object_or_404
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from datasets import imports
from datasets import services as dataset_services
from datasets.models import Item, Project
from feeds import experiments as experiment_services
from feeds import feeds as feed_services
from feeds import services as feed_filter_services
from graphs import services as graph_services
from models_app import exports
from models_app import services as model_services
from tests.conftest import PASSWORD

SHOP_SIZE = {"n_users": 150, "n_items": 120, "n_interactions": 4_000, "seed": 5}

# Names that appear nowhere but in project A: if a stranger's response holds one, A leaked.
A_NAME = "Alpha Zqx Shoes"
A_CAMPAIGN = "zqx-alpha-campaign"
A_FEED = "zqx-alpha-feed"
A_FEED_2 = "zqx-alpha-feed-two"
A_FILTER = "zqx-alpha-filter"
A_PROMOTION = "zqx-alpha-promotion"
A_EXPERIMENT = "zqx-alpha-experiment"
A_KEY = "zqx-alpha-key"
A_ITEM = "zqxalphaitem"
A_USER = "zqxalphauser"

# Public routes, reachable without logging in. Each still must not show project A's data.
PUBLIC = {
    "healthz": "load balancers' probe; answers only whether the database is up",
    "login/": "the login form itself",
    "logout/": "logging out needs no login (POST only; a GET is refused)",
    "admin/login/": "redirects to the throttled login page above",
    "admin/logout/": "sends anyone who is not staff to the admin index (and so to the login page)",
}
# Logged-in pages without a project in the URL: they show only the user's own projects.
GLOBAL_PAGES = {
    "": "the user's own project list",
    "projects/new/": "the form to create a project of one's own",
    "api/schema/": "the OpenAPI schema (no data)",
    "api/docs/": "Swagger UI over the schema (no data)",
}
API_PREFIXES = ("api/v1/", "personalize/")


def forged_form(world) -> dict:
    """A POST body that would do something if a view forgot its membership check."""
    o = world.objects
    return {
        "name": "mallory-was-here",
        "description": "pwned",
        "action": "graph",
        "method": "louvain",
        "kind": "interactions",
        "version": o["version"].pk,
        "solution": o["solution"].pk,
        "filter": o["filter"].pk,
        "campaign": o["campaign"].pk,
        "recipe": "popularity-count",
        "expression": "INCLUDE ItemID WHERE Items.PRICE < 1",
        "every_hours": "1",
        "format": "csv",
        "num_results": "5",
        "source": "popular",
        "count": "3",
        "share_percent": "50",
        "is_active": "on",
        "auto_deploy": "on",
        "mode": "incremental",
        "field": "SEGMENT",
        "weight_control": "9",
        "weight_trial": "1",
    }


@dataclass
class World:
    alice: object
    mallory: object
    a: Project
    b: Project
    key_a: object
    key_b: object
    key_b_plain: str
    objects: dict = field(default_factory=dict)


# --- the world ----------------------------------------------------------------------------------


def _build(alice, mallory, shop_files) -> World:
    a = dataset_services.create_project(name=A_NAME, owner=alice)
    b = dataset_services.create_project(name="Bravo shop", owner=mallory)
    jobs = {}
    for kind in ("users", "items", "interactions", "relations"):
        job = imports.import_file(project=a, kind=kind, path=shop_files[kind])
        assert job.status == "succeeded", job.error
        jobs[kind] = job
    dataset_services.record_events(
        project=a,
        events=[{"user_id": A_USER, "item_id": A_ITEM, "event_type": "view"}],
    )
    solution = model_services.create_solution(project=a, recipe="popularity-count")
    run = model_services.run_training(
        model_services.start_training(solution=solution, enqueue=False)
    )
    assert run.status == "succeeded", run.error
    version = run.version
    campaign = model_services.create_campaign(project=a, name=A_CAMPAIGN, version=version)
    export = exports.run_export(
        exports.start_export(project=a, version=version, num_results=5, enqueue=False)
    )
    assert export.status == "succeeded", export.error
    saved_filter = feed_filter_services.create_saved_filter(
        project=a, name=A_FILTER, expression='INCLUDE ItemID WHERE Items.CATEGORY IN ("Books")'
    )
    promotion = feed_filter_services.create_promotion(
        project=a, name=A_PROMOTION, saved_filter=saved_filter, campaign=campaign
    )
    feed = feed_services.create_feed(
        project=a, name=A_FEED, slots=[(f"campaign:{A_CAMPAIGN}", 5)], user=alice
    )
    feed_2 = feed_services.create_feed(project=a, name=A_FEED_2, slots=[("popular", 5)])
    experiment = experiment_services.create_experiment(
        project=a,
        name=A_EXPERIMENT,
        variants=[
            experiment_services.VariantInput(name="control", feed=feed, is_control=True),
            experiment_services.VariantInput(name="trial", feed=feed_2),
        ],
    )
    graph_run = graph_services.run_graph(graph_services.start_graph_run(project=a, enqueue=False))
    assert graph_run.status == "succeeded", graph_run.error
    clustering_run = graph_services.run_clustering(
        graph_services.start_clustering_run(project=a, method="louvain", enqueue=False)
    )
    assert clustering_run.status == "succeeded", clustering_run.error
    key_a, _ = dataset_services.create_api_key(project=a, name=A_KEY, created_by=alice)
    key_b, key_b_plain = dataset_services.create_api_key(
        project=b, name="bravo", created_by=mallory
    )
    return World(
        alice=alice,
        mallory=mallory,
        a=a,
        b=b,
        key_a=key_a,
        key_b=key_b,
        key_b_plain=key_b_plain,
        objects={
            "jobs": jobs,
            "solution": solution,
            "run": run,
            "version": version,
            "campaign": campaign,
            "export": export,
            "filter": saved_filter,
            "promotion": promotion,
            "feed": feed,
            "experiment": experiment,
            "graph_run": graph_run,
            "clustering_run": clustering_run,
            "item_title": Item.objects.get(project=a, external_id="i00001").attributes["TITLE"],
        },
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, shop_files, tmp_path_factory):
    """Projects A and B, built once for the module and deleted afterwards."""
    folder = tmp_path_factory.mktemp("isolation")
    with (
        django_db_blocker.unblock(),
        override_settings(
            UPLOAD_DIR=folder / "uploads",
            ARTIFACT_DIR=folder / "artifacts",
            SERVING_CACHE_SECONDS=0,
            API_THROTTLE_RATE="off",
        ),
    ):
        from django.contrib.auth import get_user_model

        users = get_user_model().objects
        alice = users.create_user(username="iso-alice", password=PASSWORD)
        mallory = users.create_user(username="iso-mallory", password=PASSWORD)
        try:
            yield _build(alice, mallory, shop_files)
        finally:
            for project in Project.objects.filter(memberships__user__in=[alice, mallory]):
                _delete_project(project)
            users.filter(pk__in=[alice.pk, mallory.pk]).delete()


def _delete_project(project):
    from feeds.models import Experiment
    from models_app.models import Campaign

    Experiment.objects.filter(project=project).delete()
    Campaign.objects.filter(project=project).delete()
    project.delete()


@pytest.fixture(autouse=True)
def _world_settings(settings, world):
    settings.SERVING_CACHE_SECONDS = 0
    settings.API_THROTTLE_RATE = "off"


# --- the routes ---------------------------------------------------------------------------------


@dataclass
class Route:
    pattern: str  # the full route, e.g. "p/<slug:slug>/feeds/<str:name>/"
    name: str | None
    kwargs: list[str]
    regex: bool

    @property
    def key(self) -> str:
        return self.name or self.pattern


GROUP = re.compile(r"<(?:(\w+):)?(\w+)>")
REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def all_routes(resolver=None, prefix="", regex=False):
    """Every URL pattern of the site, nested resolvers flattened."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        text = str(entry.pattern)
        is_regex = regex or text.startswith("^") or "(?P" in text
        if isinstance(entry, URLResolver):
            yield from all_routes(entry, prefix + text, is_regex)
        elif isinstance(entry, URLPattern):
            full = prefix + text
            names = [m.group(2) for m in GROUP.finditer(full)]
            names += [m.group(1) for m in REGEX_GROUP.finditer(full)]
            yield Route(full, entry.name, names, is_regex)


def to_url(route: Route, values: dict) -> str:
    """The concrete URL of ``route`` with ``values`` for its kwargs."""
    text = GROUP.sub(lambda m: str(values[m.group(2)]), route.pattern)
    if route.regex:
        text = REGEX_GROUP.sub(lambda m: str(values[m.group(1)]), text)
        text = text.replace("^", "").replace("$", "").replace("\\", "")
        text = text.replace(".+", "x").replace(".*", "x")  # catch-all routes
    return "/" + text


def project_kwargs(world: World, slug: str) -> tuple[dict, dict]:
    """kwarg name -> value for every project route, and per-route overrides (name -> list)."""
    o = world.objects
    common = {
        "slug": slug,
        "job_id": o["jobs"]["interactions"].pk,
        "key_id": world.key_a.pk,
        "campaign_id": o["campaign"].pk,
        "export_id": o["export"].pk,
        "solution_id": o["solution"].pk,
        "filter_id": o["filter"].pk,
        "promotion_id": o["promotion"].pk,
    }
    # Names that mean different things in different routes ("run_id", "name", "kind").
    per_route = {
        "training-run": [{"run_id": o["run"].pk}],
        "training-run-progress": [{"run_id": o["run"].pk}],
        "training-run-cancel": [{"run_id": o["run"].pk}],
        "training-run-retry": [{"run_id": o["run"].pk}],
        "graph-run": [{"run_id": o["graph_run"].pk}],
        "clustering-run": [{"run_id": o["clustering_run"].pk}],
        "clustering-save-segment": [{"run_id": o["clustering_run"].pk}],
        "schema-edit": [{"kind": k} for k in ("interactions", "items", "users", "relations")],
        "experiment-detail": [{"name": A_EXPERIMENT}],
        "experiment-weights": [{"name": A_EXPERIMENT}],
        "experiment-action": [{"name": A_EXPERIMENT, "action": a} for a in ("start", "stop")],
        "feed-edit": [{"name": A_FEED}],
        "feed-slots": [{"name": A_FEED}],
        "feed-delete": [{"name": A_FEED}],
        "feed-preview": [{"name": A_FEED}],
    }
    runs = [("graph", o["graph_run"].pk), ("clustering", o["clustering_run"].pk)]
    for name in ("segments-run-progress", "segments-run-cancel", "segments-run-retry"):
        per_route[name] = [{"kind": kind, "run_id": pk} for kind, pk in runs]
    return common, per_route


def api_kwargs() -> tuple[dict, dict]:
    return {}, {"api-related": [{"item_id": A_ITEM}], "api-feed": [{"name": A_FEED}]}


# The admin lets staff only in; alice and mallory are not staff, so any value will do.
ADMIN_KWARGS = {
    "app_label": "datasets",
    "object_id": "1",
    "id": "1",
    "content_type_id": "1",
    "url": "x/",
}
# Kwargs naming project A's objects; with B's slug only routes having one of them are walked.
OBJECT_KWARGS = {
    "job_id",
    "key_id",
    "campaign_id",
    "export_id",
    "solution_id",
    "filter_id",
    "promotion_id",
    "run_id",
    "name",
}


def urls_for(route: Route, common: dict, per_route: dict) -> list[str] | None:
    """Concrete URLs for ``route``, or None when a kwarg has no known value."""
    variants = per_route.get(route.key, [{}])
    out = []
    for variant in variants:
        values = {**common, **variant}
        if any(k not in values for k in route.kwargs):
            return None
        out.append(to_url(route, values))
    return out


def kind_of(route: Route) -> str:
    if route.pattern.startswith("admin/") and route.pattern not in PUBLIC:
        return "admin"
    if route.pattern in PUBLIC:
        return "public"
    if route.pattern.startswith(API_PREFIXES):
        return "api"
    if route.pattern.startswith("p/<slug:slug>/"):
        return "project"
    if route.pattern in GLOBAL_PAGES:
        return "global"
    return "unknown"


def walk(world: World, slug: str | None = None):
    """(route, kind, url) for every route; unfillable or unclassified routes in ``problems``."""
    slug = slug or world.a.slug
    common, per_route = project_kwargs(world, slug)
    api_common, api_per_route = api_kwargs()
    targets, problems = [], []
    for route in all_routes():
        kind = kind_of(route)
        if kind == "unknown":
            problems.append(f"{route.pattern}: not under p/<slug>/, the API, admin, or listed")
            continue
        if kind == "admin":
            urls = [to_url(route, ADMIN_KWARGS)] if set(route.kwargs) <= set(ADMIN_KWARGS) else None
        elif kind == "api":
            urls = urls_for(route, api_common, api_per_route)
        else:
            urls = urls_for(route, common, per_route)
        if urls is None:
            problems.append(f"{route.pattern} ({route.name}): cannot fill {route.kwargs}")
            continue
        targets.extend((route, kind, url) for url in urls)
    return targets, problems


# --- what a response may show --------------------------------------------------------------------


def markers(world: World) -> list[str]:
    o = world.objects
    return [
        A_NAME,
        A_CAMPAIGN,
        A_FEED,
        A_FILTER,
        A_PROMOTION,
        A_EXPERIMENT,
        A_KEY,
        A_ITEM,
        A_USER,
        world.key_a.prefix,
        o["item_title"],  # i00001's, shown on pages and in API metadata
        f"#{o['version'].pk} popularity-count",
    ]


def body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def leaked(world: World, response, url: str) -> list[str]:
    """Markers of project A in ``response`` that were not already in the URL asked for."""
    text = body(response)
    return [m for m in markers(world) if m in text and m not in url]


def _project_fk(model) -> str | None:
    for f in model._meta.concrete_fields:
        if isinstance(f, models.ForeignKey) and f.related_model is Project:
            return f.name
    return None


def project_rows(project: Project) -> dict:
    """Every row that belongs to ``project`` (directly or through one foreign key), by model."""
    snapshot = {}
    for model in apps.get_models():
        if model is Project:
            lookup = "pk"
        elif _project_fk(model):
            lookup = _project_fk(model)
        else:
            lookup = next(
                (
                    f"{f.name}__{_project_fk(f.related_model)}"
                    for f in model._meta.concrete_fields
                    if isinstance(f, models.ForeignKey) and _project_fk(f.related_model)
                ),
                None,
            )
        if lookup is None:
            continue
        rows = model._default_manager.filter(**{lookup: project.pk}).order_by("pk").values()
        snapshot[model._meta.label] = list(rows)
    return snapshot


def changed(before: dict, after: dict) -> list[str]:
    out = []
    for label in before:
        if before[label] != after[label]:
            out.append(f"{label}: {len(before[label])} rows -> {len(after[label])} rows")
    return out


# --- the tests -----------------------------------------------------------------------------------


def test_every_route_can_be_filled_and_classified(world):
    targets, problems = walk(world)
    assert not problems, (
        "Routes the isolation walk cannot fill; add their kwargs to project_kwargs() / "
        "api_kwargs() or classify them:\n" + "\n".join(problems)
    )
    kinds = {kind for _, kind, _ in targets}
    assert {"project", "api", "admin", "public", "global"} <= kinds
    assert sum(kind == "project" for _, kind, _ in targets) >= 60, len(targets)


@pytest.mark.django_db
def test_anonymous_visitors_get_the_login_page_or_401_never_data(world):
    client = Client()
    targets, _ = walk(world)
    form = forged_form(world)
    wrong = []
    for _route, kind, url in targets:
        for method in ("get", "post"):
            response = getattr(client, method)(url, form if method == "post" else None)
            status = response.status_code
            if kind in ("project", "global"):
                ok = status == 302 and response["Location"].startswith("/login/?next=")
            elif kind == "admin":
                ok = status == 302 and "login/" in response["Location"]
            elif kind == "api":
                ok = status in (401, 403)
            else:  # public
                ok = status < 500
            if not ok or leaked(world, response, url):
                wrong.append(f"{method.upper()} {url} -> {status} {leaked(world, response, url)}")
    assert not wrong, "anonymous requests that were not turned away:\n" + "\n".join(wrong)


def _as_mallory(world, slug, methods=("get", "post")):
    client = Client()
    client.force_login(world.mallory)
    targets, _ = walk(world, slug)
    form = forged_form(world)
    before = project_rows(world.a)
    wrong = []
    for route, kind, url in targets:
        if slug != world.a.slug and (kind != "project" or not OBJECT_KWARGS & set(route.kwargs)):
            continue  # with B's slug only routes naming A's objects are of interest
        if route.pattern in ("logout/", "admin/logout/"):
            continue  # they would end her session half-way through the walk
        for method in methods:
            response = getattr(client, method)(url, form if method == "post" else None)
            status = response.status_code
            # 405: the route does not take this method (refused before anything is looked up).
            if kind == "project" and slug == world.a.slug:
                ok = status in (403, 404, 405)
            elif kind == "project":
                ok = status in (400, 403, 404, 405)
            elif kind == "admin":
                ok = status == 302 and "login/" in response["Location"]
            elif kind == "api":
                ok = status in (401, 403)
            else:  # public and global pages: her own things only
                ok = status < 500
            if not ok or leaked(world, response, url):
                wrong.append(f"{method.upper()} {url} -> {status} {leaked(world, response, url)}")
            elif kind == "project" and slug == world.a.slug:
                # A's slug must answer as a slug that exists nowhere: no existence oracle.
                nowhere = url.replace(f"/p/{slug}/", f"/p/{DECOY_SLUG}/", 1)
                decoy = getattr(client, method)(nowhere, form if method == "post" else None)
                if status != decoy.status_code or _page(response) != _page(decoy, slug):
                    wrong.append(f"{method.upper()} {url} -> {status}, unlike {nowhere}")
    after = project_rows(world.a)
    return wrong, changed(before, after)


CSRF_TOKEN = re.compile(r"[A-Za-z0-9]{64}")


def _page(response, slug: str | None = None) -> str:
    """The body with CSRF tokens (new each request) blanked and the decoy slug put back."""
    text = CSRF_TOKEN.sub("<token>", body(response))
    return text.replace(DECOY_SLUG, slug) if slug else text


@pytest.mark.django_db
def test_a_member_of_another_project_gets_404_and_changes_nothing(world):
    wrong, changes = _as_mallory(world, world.a.slug)
    assert not wrong, "project A's routes answered mallory:\n" + "\n".join(wrong)
    assert not changes, f"mallory's requests changed project A: {changes}"


@pytest.mark.django_db
def test_put_patch_and_delete_are_refused_to_a_stranger_too(world):
    wrong, changes = _as_mallory(world, world.a.slug, methods=("put", "patch", "delete"))
    assert not wrong, "project A's routes answered mallory:\n" + "\n".join(wrong)
    assert not changes, f"mallory's requests changed project A: {changes}"


@pytest.mark.django_db
def test_project_a_ids_under_project_b_s_slug_find_nothing(world):
    wrong, changes = _as_mallory(world, world.b.slug)
    assert not wrong, "A's objects reached through B's URLs:\n" + "\n".join(wrong)
    assert not changes, f"mallory's requests changed project A: {changes}"


# Names that exist nowhere: B's key asking for them must get the same answer as for A's names.
DECOYS = {
    A_CAMPAIGN: "zqx-decoy-campaign",
    A_FILTER: "zqx-decoy-filter",
    A_FEED: "zqx-decoy-feed",
    A_ITEM: "zqxdecoyitem",
    A_USER: "zqxdecoyuser",
}


def api_requests(world: World, names: dict | None = None):
    """(method, url, data) for every API route, naming project A's objects (or ``names``)."""
    n = {k: k for k in DECOYS} if names is None else names
    targets, _ = walk(world)
    query = {"user_id": n[A_USER], "campaign": n[A_CAMPAIGN], "filter": n[A_FILTER]}
    for _route, kind, url in targets:
        if kind != "api":
            continue
        url = url.replace(A_ITEM, n[A_ITEM]).replace(A_FEED, n[A_FEED])
        yield "get", url, {**query, "num_results": 5}
        yield (
            "post",
            url,
            {
                **query,
                "item_ids": [n[A_ITEM], "i00001"],
                "events": [{"user_id": n[A_USER], "item_id": n[A_ITEM], "event_type": "view"}],
                "users": [{"user_id": n[A_USER]}],
                "items": [{"item_id": n[A_ITEM]}],
            },
        )


def send(client, method, url, data, **headers):
    if method == "get":
        return client.get(url, data, **headers)
    return client.post(url, data, content_type="application/json", **headers)


DECOY_SLUG = "zqx-decoy-project"
DECOY_TRACKING_ID = "00000000-0000-5000-8000-000000000000"


def personalize_requests(world: World, decoy: bool = False):
    """(url, body) for every /personalize/ route, naming A's ARNs (or ARNs of nothing)."""
    from feeds.personalize import arns
    from feeds.personalize import events as personalize_events

    slug = DECOY_SLUG if decoy else world.a.slug
    n = DECOYS if decoy else {k: k for k in DECOYS}
    campaign = arns.arn_for("campaign", slug, n[A_CAMPAIGN])
    tracking = DECOY_TRACKING_ID if decoy else personalize_events.tracking_id(world.a)
    bodies = {
        "personalize-recommendations": [
            {"campaignArn": campaign, "userId": n[A_USER]},
            {"campaignArn": campaign, "itemId": n[A_ITEM]},
        ],
        "personalize-ranking": [
            {"campaignArn": campaign, "userId": n[A_USER], "inputList": [n[A_ITEM], "i00001"]}
        ],
        "personalize-events": [
            {
                "trackingId": tracking,
                "userId": n[A_USER],
                "sessionId": "s1",
                "eventList": [{"eventType": "view", "itemId": n[A_ITEM], "sentAt": 1.7e9}],
            }
        ],
        "personalize-items": [
            {"datasetArn": arns.arn_for("dataset", slug, "items"), "items": [{"itemId": "x"}]}
        ],
        "personalize-unknown": [{"campaignArn": campaign, "userId": n[A_USER]}],
        "personalize-users": [
            {"datasetArn": arns.arn_for("dataset", slug, "users"), "users": [{"userId": "x"}]}
        ],
    }
    targets, _ = walk(world)
    for route, _kind, url in targets:
        if url.startswith("/personalize/"):
            assert route.name in bodies, f"{url}: add a request body to personalize_requests()"
            for data in bodies[route.name]:
                yield url, data


def signed_post(client, api_key, url: str, data: dict):
    """POST ``data`` to ``url`` signed with SigV4 by ``api_key``'s AWS credentials."""
    import json

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from feeds.personalize.auth import aws_credentials

    payload = json.dumps(data)
    request = AWSRequest(
        method="POST",
        url=f"http://testserver{url}",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*aws_credentials(api_key)), "personalize", "local").add_auth(request)
    return client.post(
        url,
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=request.headers["Authorization"],
        HTTP_X_AMZ_DATE=request.headers["X-Amz-Date"],
        HTTP_HOST="testserver",
    )


def same_answer(response, decoy, real_names: dict) -> bool:
    """True if ``response`` (to A's names) is the answer to names that exist nowhere."""
    if response.status_code != decoy.status_code:
        return False
    if response.status_code < 400:
        return True
    text = body(response)
    for real, fake in real_names.items():
        text = text.replace(real, fake)
    return text == body(decoy)


@pytest.mark.django_db
def test_project_b_s_api_key_gets_nothing_of_project_a(world):
    """Asking with B's key for A's campaign, feed, filter, item and user: the answer is the one
    for names that exist nowhere (so not even their existence shows), and A is unchanged."""
    before = project_rows(world.a)
    wrong = []
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world.key_b_plain}"}
    client = Client()
    pairs = list(zip(api_requests(world), api_requests(world, DECOYS), strict=True))
    assert len(pairs) >= 14
    for (method, url, data), (_, decoy_url, decoy_data) in pairs:
        response = send(client, method, url, data, **auth)
        status = response.status_code
        text = body(response)
        sent = url + repr(data)
        shown = [m for m in markers(world) if m in text and m not in sent]
        decoy = send(client, method, decoy_url, decoy_data, **auth)
        # Error messages may echo the name asked for; otherwise they must be the same.
        if status >= 500 or shown or not same_answer(response, decoy, DECOYS):
            wrong.append(
                f"{method.upper()} {url} {data} -> {status} {shown} "
                f"(names that exist nowhere: {decoy.status_code})"
            )
    from feeds.personalize.events import tracking_id

    real_names = {**DECOYS, world.a.slug: DECOY_SLUG, tracking_id(world.a): DECOY_TRACKING_ID}
    signed = list(
        zip(personalize_requests(world), personalize_requests(world, decoy=True), strict=True)
    )
    for (url, data), (_, decoy_data) in signed:
        response = signed_post(client, world.key_b, url, data)
        status = response.status_code
        shown = [m for m in markers(world) if m in body(response) and m not in url + repr(data)]
        decoy = signed_post(client, world.key_b, url, decoy_data)
        if not 400 <= status < 500 or shown or not same_answer(response, decoy, real_names):
            wrong.append(
                f"signed POST {url} {data} -> {status} {body(response)[:300]} {shown} "
                f"(ARNs of nothing: {decoy.status_code} {body(decoy)[:300]})"
            )
    assert not wrong, "project B's key learnt something of project A:\n" + "\n".join(wrong)
    assert not changed(before, project_rows(world.a))


@pytest.mark.django_db
def test_a_session_never_reaches_the_api(world):
    client = Client()
    client.force_login(world.alice)
    for method, url, data in api_requests(world):
        response = send(client, method, url, data)
        assert response.status_code in (401, 403), (method, url, response.status_code)


@pytest.mark.django_db
def test_the_owner_reaches_every_route_the_walk_requests(world, tmp_path):
    """The control: with alice's session the same URLs reach the views and find the objects,
    and every marker the other tests look for does show on A's own pages."""
    client = Client()
    client.force_login(world.alice)
    targets, _ = walk(world)
    wrong, seen = [], set()
    for _route, kind, url in targets:
        if kind not in ("project", "global"):
            continue
        response = client.get(url)
        status = response.status_code
        if status == 405:  # POST only: post, then roll back whatever it did
            throwaway = override_settings(
                UPLOAD_DIR=tmp_path / "uploads", ARTIFACT_DIR=tmp_path / "artifacts"
            )
            with throwaway, transaction.atomic():
                response = client.post(url, {})
                status = response.status_code
                transaction.set_rollback(True)
            ok = status in (200, 302, 400)
        else:
            ok = status in (200, 302)
            seen.update(m for m in markers(world) if m in body(response))
        if not ok:
            wrong.append(f"{url} -> {status}")
    _clear_serving_caches()
    assert not wrong, "the owner could not reach these routes (a broken fill?):\n" + "\n".join(
        wrong
    )
    # (The marker item and user show only where asked for by id: previews and the API.)
    assert set(markers(world)) - seen == {A_ITEM, A_USER}, set(markers(world)) - seen


@pytest.mark.django_db
def test_the_owner_s_key_does_see_project_a_through_the_api(world):
    """The API control: A's own key gets A's data, so B's empty answers mean something."""
    _, plain = dataset_services.create_api_key(project=world.a, name="control")
    response = Client().get(
        "/api/v1/recommendations",
        {"user_id": A_USER, "campaign": A_CAMPAIGN, "num_results": 5},
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert response.status_code == 200, response.content
    assert response.json()["items"], response.content
    feed = Client().get(
        f"/api/v1/feeds/{A_FEED}", {"user_id": A_USER}, HTTP_AUTHORIZATION=f"Bearer {plain}"
    )
    assert feed.status_code == 200, feed.content
    # ... and A's key, signed, gets A's recommendations on /personalize/ (the requests that
    # project B's key sends, only with A's credentials).
    url, data = next(personalize_requests(world))
    signed = signed_post(Client(), world.key_a, url, data)
    assert signed.status_code == 200, signed.content
    assert signed.json()["itemList"], signed.content


def id_requests(world: World):
    """Requests under project B's slug whose query or form names project A's objects by id."""
    o = world.objects
    b = f"/p/{world.b.slug}"
    version, solution, campaign = o["version"].pk, o["solution"].pk, o["campaign"].pk
    feed, feed_filter = o["feed"].pk, o["filter"].pk
    return [
        ("get", f"{b}/models/compare/", {"versions": str(version)}),
        ("get", f"{b}/models/exports/", {"version": str(version)}),
        ("post", f"{b}/models/exports/", {"version": version, "format": "csv", "num_results": 5}),
        ("post", f"{b}/campaigns/", {"name": "stolen", "version": version, "solution": solution}),
        ("get", f"{b}/promotions/params/", {"filter": feed_filter}),
        ("get", f"{b}/feeds/params/", {"filter": feed_filter}),
        ("get", f"{b}/feeds/users/", {"user_id": A_USER[:6]}),
        ("get", f"{b}/segments/", {"follow_user": A_USER}),
        ("post", f"{b}/feeds/", {"name": "stolen", "source": f"campaign:{A_CAMPAIGN}"}),
        (
            "post",
            f"{b}/promotions/new/",
            {
                "name": "stolen",
                "filter": feed_filter,
                "campaign": campaign,
                "mode": "share",
                "share_percent": 20,
            },
        ),
        (
            "post",
            f"{b}/experiments/",
            {
                "name": "stolen",
                "variant_name_0": "control",
                "variant_feed_0": feed,
                "variant_name_1": "trial",
                "variant_feed_1": o["experiment"].variants.exclude(feed=feed).get().feed_id,
                "control": "0",
            },
        ),
    ]


@pytest.mark.django_db
def test_project_a_ids_in_forms_and_queries_under_project_b_find_nothing(world):
    from feeds.models import Experiment, Feed, Promotion
    from models_app.models import BatchExport, Campaign

    client = Client()
    client.force_login(world.mallory)
    before = project_rows(world.a)
    wrong = []
    for method, url, data in id_requests(world):
        response = getattr(client, method)(url, data)
        sent = url + repr(data)
        shown = [m for m in markers(world) if m in body(response) and m not in sent]
        if response.status_code >= 500 or shown:
            wrong.append(f"{method.upper()} {url} {data} -> {response.status_code} {shown}")
    assert not wrong, "A's objects reached by id from project B:\n" + "\n".join(wrong)
    assert not changed(before, project_rows(world.a))
    for model in (BatchExport, Campaign, Feed, Promotion, Experiment):
        assert not model.objects.filter(project=world.b).exists(), model


@pytest.mark.django_db
def test_the_walk_notices_a_forgotten_membership_check(world, monkeypatch):
    """The walk can fail: with the membership check gone, mallory's GETs reach A's pages."""
    from datasets import selectors

    monkeypatch.setattr(
        selectors, "project_for_member", lambda *, user, slug: get_object_or_404(Project, slug=slug)
    )
    wrong, _ = _as_mallory(world, world.a.slug, methods=("get",))
    assert len(wrong) >= 30, wrong
    assert any(A_NAME in line for line in wrong), wrong


@pytest.mark.django_db
def test_the_walk_notices_an_object_looked_up_without_its_project(world, monkeypatch):
    """... and with one selector ignoring the project, A's export shows under B's slug."""
    from models_app.models import BatchExport

    monkeypatch.setattr(
        exports,
        "export_in_project",
        lambda project, export_id: BatchExport.objects.get(pk=export_id),
    )
    wrong, _ = _as_mallory(world, world.b.slug, methods=("get",))
    assert any("/exports/" in line for line in wrong), wrong


def _clear_serving_caches():
    from feeds import catalog, recommending, selectors
    from models_app import serving

    serving.clear_cache()
    catalog.clear_cache()
    recommending.clear_caches()
    feed_services.clear_caches()
    selectors.clear_popularity_cache()


@pytest.fixture
def warm_caches(settings):
    """Serving caches on, as in production, and emptied before and after."""
    settings.SERVING_CACHE_SECONDS = 60
    _clear_serving_caches()
    yield
    _clear_serving_caches()


@pytest.mark.django_db
def test_serving_caches_keep_projects_with_the_same_names_apart(world, tmp_path, warm_caches):
    """Project C reuses A's campaign and feed names and some of A's item ids: with the caches
    warm, each key still gets only its own project's items, whichever asks first."""
    c = dataset_services.create_project(name="Charlie shop", owner=world.mallory)
    c_items = {"i00001", "i00002", "i00003", "charlie-only"}
    rows = [
        f"c{u},{item},{1_700_000_000 + u * 10 + n}"
        for u in range(260)
        for n, item in enumerate(sorted(c_items))
    ]
    path = tmp_path / "c.csv"
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows) + "\n")
    job = imports.import_file(project=c, kind="interactions", path=path)
    assert job.status == "succeeded", job.error
    solution = model_services.create_solution(project=c, recipe="popularity-count")
    run = model_services.run_training(
        model_services.start_training(solution=solution, enqueue=False)
    )
    assert run.status == "succeeded", run.error
    model_services.create_campaign(project=c, name=A_CAMPAIGN, version=run.version)
    feed_services.create_feed(project=c, name=A_FEED, slots=[(f"campaign:{A_CAMPAIGN}", 5)])
    _, key_a = dataset_services.create_api_key(project=world.a, name="a")
    _, key_c = dataset_services.create_api_key(project=c, name="c")

    def items(key, url, params):
        response = Client().get(url, params, HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 200, (url, response.content)
        data = response.json()
        return {entry["item_id"] for entry in data.get("items", data.get("results", []))}

    everything = {"exclude_interacted": "false", "num_results": 10}
    calls = [
        ("/api/v1/recommendations", {"campaign": A_CAMPAIGN, "user_id": "c1", **everything}),
        ("/api/v1/items/i00001/related", {"campaign": A_CAMPAIGN, **everything}),
        (f"/api/v1/feeds/{A_FEED}", {"user_id": "new-user"}),
    ]
    for url, params in calls:
        first_a = items(key_a, url, params)
        from_c = items(key_c, url, params)
        again_a = items(key_a, url, params)
        assert from_c and from_c <= c_items, (url, from_c, first_a)
        assert first_a == again_a and len(first_a - c_items) >= 3, (url, first_a)


@pytest.mark.django_db
def test_the_walk_notices_a_forged_post_changing_project_a(world, monkeypatch, settings, tmp_path):
    """... and the before/after comparison sees what mallory's POSTs would change (rolled back;
    the folders of the runs and jobs they start go to a throwaway place)."""
    from datasets import selectors

    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"

    monkeypatch.setattr(
        selectors, "project_for_member", lambda *, user, slug: get_object_or_404(Project, slug=slug)
    )
    try:
        with transaction.atomic():
            _, changes = _as_mallory(world, world.a.slug, methods=("post",))
            transaction.set_rollback(True)
    finally:
        _clear_serving_caches()
    # (Campaigns, feeds, filters, promotions and keys stay put even then: their views also
    # check the member's role, which mallory has none of in A.)
    labels = " ".join(changes)
    for model in ("ImportJob", "TrainingRun", "BatchExport"):
        assert f".{model}:" in labels, changes


@pytest.mark.django_db
def test_the_same_forms_under_project_a_s_own_slug_do_create(world, settings, tmp_path):
    """The control of the test above: posted by alice to A's own pages, the same forms are
    valid and create what they ask for (rolled back), so B's refusals come from the ids."""
    from feeds.models import Experiment, Feed, Promotion
    from models_app.models import BatchExport, Campaign

    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    creates = {
        "/models/exports/": BatchExport,
        "/campaigns/": Campaign,
        "/feeds/": Feed,
        "/promotions/new/": Promotion,
        "/experiments/": Experiment,
    }
    client = Client()
    client.force_login(world.alice)
    b, a = f"/p/{world.b.slug}", f"/p/{world.a.slug}"
    posts = [(url, data) for method, url, data in id_requests(world) if method == "post"]
    assert {url.removeprefix(b) for url, _ in posts} == set(creates)
    missing = []
    try:
        for url, data in posts:
            model = creates[url.removeprefix(b)]
            with transaction.atomic():
                before = model.objects.filter(project=world.a).count()
                response = client.post(a + url.removeprefix(b), data)
                after = model.objects.filter(project=world.a).count()
                transaction.set_rollback(True)
            if after != before + 1:
                missing.append(f"{url} -> {response.status_code}: {body(response)[:200]}")
        for method, url, data in id_requests(world):
            if method == "get":
                response = client.get(a + url.removeprefix(b), data)
                if response.status_code != 200:
                    missing.append(f"GET {url} {data} -> {response.status_code}")
                if url.endswith(("/compare/", "/feeds/users/")):
                    expected = f"#{world.objects['version'].pk}" if "compare" in url else A_USER
                    if expected not in body(response):
                        missing.append(f"GET {url} {data} does not show {expected}")
    finally:
        _clear_serving_caches()
    assert not missing, "\n".join(missing)
