"""schemathesis over the OpenAPI schema: generated requests to every /api/v1/ operation of a
live server, with a valid API key, on a small trained demo shop; none may answer 5xx.

The schema comes from drf-spectacular's generator in-process (the /api/schema/ page needs a
logged-in session). Each operation gets ``EXAMPLES`` generated cases (schema-conforming and
not), so the whole run stays well under a minute.
"""

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_api_key
from feeds import catalog as catalog_module
from feeds import recommending
from feeds import selectors as feed_selectors
from feeds.services import create_promotion, create_saved_filter
from models_app import services, serving

EXAMPLES = 20  # per operation and generation mode (valid requests, then invalid ones)
SHOP = {"n_users": 200, "n_items": 150, "n_interactions": 5_000, "seed": 3}
FAST_ALS = {"factors": 8, "iterations": 3, "exploration_weight": 0.0}


@pytest.fixture
def trained_shop(transactional_db, project, user, tmp_path, settings):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.API_THROTTLE_RATE = "off"
    files = generate_demo_shop(tmp_path / "shop", **SHOP)["files"]
    for kind in ("items", "users", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    solution = services.create_solution(
        project=project, recipe="user-personalization", params=FAST_ALS
    )
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    services.create_campaign(project=project, name="default", version=run.version)
    flt = create_saved_filter(
        project=project,
        name="category",
        expression="INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORIES)",
    )
    create_promotion(
        project=project, name="Promo", saved_filter=flt, filter_values={"CATEGORIES": ["Books"]}
    )
    _, key = create_api_key(project=project, name="schemathesis", created_by=user)
    yield key
    serving.clear_cache()
    catalog_module.clear_cache()
    recommending.clear_caches()
    feed_selectors.clear_popularity_cache()


def api_operations():
    raw = SchemaGenerator().get_schema(request=None, public=True)
    raw["paths"] = {p: ops for p, ops in raw["paths"].items() if p.startswith("/api/v1/")}
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    return raw, operations


def test_the_schema_lists_the_serving_operations():
    raw, operations = api_operations()
    labels = {op.label for op in operations}
    assert {
        "GET /api/v1/recommendations",
        "GET /api/v1/items/{item_id}/related",
        "POST /api/v1/rank",
        "POST /api/v1/events",
    } <= labels
    assert len(operations) == sum(len(ops) for ops in raw["paths"].values())


def test_no_operation_answers_a_server_error(trained_shop, live_server):
    _, operations = api_operations()
    headers = {"Authorization": f"Bearer {trained_shop}"}
    failures = []
    calls = {"n": 0}
    for operation, mode in [(op, m) for op in operations for m in GenerationMode]:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call(base_url=live_server.url, headers=headers)
            calls["n"] += 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception:
                failures.append(
                    f"{case.operation.label} -> {response.status_code}: {case.as_curl_command()}\n"
                    f"{response.text[:300]}"
                )
                raise

        try:
            check()
        except Exception:  # recorded above; keep going so one run reports every operation
            if not failures or not failures[-1].startswith(operation.label):
                raise
    assert calls["n"] >= len(operations) * 10  # every operation really got requests
    assert not failures, "\n\n".join(failures)
