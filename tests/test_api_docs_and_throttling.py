"""The OpenAPI schema and docs page, the per-key rate limit, and the API page's curl examples."""

import json
import re

import pytest
from django.urls import reverse

from datasets.models import ApiKey
from datasets.services import create_api_key, create_project
from datasets.throttling import ApiKeyRateThrottle, parse_rate

pytestmark = pytest.mark.django_db

EVENT = {"events": [{"user_id": "u1", "item_id": "i1", "event_type": "view"}]}


def post_events(client, key):
    return client.post(
        reverse("api-events"),
        json.dumps(EVENT),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )


# --- rate limit ---------------------------------------------------------------------------


def test_a_key_over_its_rate_gets_429_with_retry_after(client, project, settings):
    settings.API_THROTTLE_RATE = "3/min"
    _, key = create_api_key(project=project, name="shop")
    for _ in range(3):
        assert post_events(client, key).status_code == 200
    response = post_events(client, key)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 120
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert "3 requests per minute per key" in error["message"]
    assert "API_THROTTLE_RATE" in error["message"]


def test_keys_are_counted_separately_even_from_one_client(client, project, user, settings):
    settings.API_THROTTLE_RATE = "2/min"
    _, first = create_api_key(project=project, name="web")
    _, second = create_api_key(project=project, name="app")
    other_project = create_project(name="Other", owner=user)
    _, third = create_api_key(project=other_project, name="web")
    assert [post_events(client, first).status_code for _ in range(3)] == [200, 200, 429]
    assert [post_events(client, second).status_code for _ in range(3)] == [200, 200, 429]
    assert post_events(client, third).status_code == 200


def test_refused_requests_are_not_counted_and_unauthenticated_ones_get_401(
    client, project, settings
):
    settings.API_THROTTLE_RATE = "1/min"
    response = client.post(
        reverse("api-events"), json.dumps(EVENT), content_type="application/json"
    )
    assert response.status_code == 401  # no key: authentication fails before any counting


def test_the_limit_can_be_switched_off(client, project, settings):
    settings.API_THROTTLE_RATE = "off"
    _, key = create_api_key(project=project, name="shop")
    assert all(post_events(client, key).status_code == 200 for _ in range(5))


def test_workers_share_the_count_through_the_cache(client, project, settings, monkeypatch):
    """Two web workers: each counts locally and shares its count through the cache."""
    settings.API_THROTTLE_RATE = "6/min"
    _, key = create_api_key(project=project, name="shop")
    worker_a, worker_b = {}, {}
    codes = []
    for worker in (worker_a, worker_b, worker_a, worker_b, worker_a, worker_b, worker_a, worker_b):
        monkeypatch.setattr(ApiKeyRateThrottle, "_local", worker)
        codes.append(post_events(client, key).status_code)
    # Counting apart, all 8 would pass (4 per worker, under 6 each); sharing, they stop at 6,
    # give or take the one request the other worker has not reported yet.
    assert codes.count(200) in (6, 7), codes
    assert codes[-1] == 429


def test_retry_after_is_when_the_weighted_count_drops_below_the_limit():
    # 10 per 60 s. 10 in the previous window and 5 so far, 10 s into this one: the previous
    # window's weight (now 50/60) must fall below 0.5, which happens 30 s in: 20 s from now.
    assert ApiKeyRateThrottle._wait(10, 60, elapsed=10, before=10, so_far=5) == 20
    # All 10 used in this window: wait for the next one, where their weight starts fading.
    assert ApiKeyRateThrottle._wait(10, 60, elapsed=10, before=0, so_far=10) == 50
    assert ApiKeyRateThrottle._wait(10, 60, elapsed=59.9, before=0, so_far=10) == 1


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("6000/min", (6000, 60)),
        ("100/s", (100, 1)),
        ("50000/hour", (50000, 3600)),
        ("10/10s", (10, 10)),
        ("1000/day", (1000, 86400)),
        ("off", None),
        ("", None),
    ],
)
def test_rates_are_parsed(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["fast", "10/fortnight", "-5/min", "ten/min"])
def test_a_bad_rate_says_how_to_write_it(rate):
    with pytest.raises(ValueError, match=r'e\.g\. "6000/min"'):
        parse_rate(rate)


# --- OpenAPI schema and docs --------------------------------------------------------------


def test_the_schema_lists_the_endpoints_and_the_bearer_key(logged_in_client):
    response = logged_in_client.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    for path in (
        "/api/v1/events",
        "/api/v1/users",
        "/api/v1/items",
        "/api/v1/recommendations",
        "/api/v1/items/{item_id}/related",
        "/api/v1/rank",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert {"apiKey": []} in schema["paths"]["/api/v1/events"]["post"]["security"]
    # the dashboard's own pages and the docs themselves are not API endpoints
    assert not any(
        path.startswith("/p/") or path.startswith("/api/docs") for path in schema["paths"]
    )


def test_the_docs_need_a_login(client):
    for name in ("api-schema", "api-docs"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_docs_page_loads_swagger_ui_from_this_server(logged_in_client):
    response = logged_in_client.get(reverse("api-docs"))
    assert response.status_code == 200
    page = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("swagger-ui-bundle.js" in asset for asset in assets)
    assert all(asset.startswith("/") for asset in assets), assets  # nothing from a CDN
    assert "validatorUrl" in page and "cdn" not in page.lower()
    for asset in assets:
        if asset.endswith((".js", ".css")):
            served = logged_in_client.get(asset)
            assert served.status_code == 200, asset
            b"".join(served.streaming_content) if served.streaming else served.content


def test_an_api_key_alone_does_not_open_the_docs(client, project):
    _, key = create_api_key(project=project, name="shop")
    response = client.get(reverse("api-schema"), headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 302  # the docs are a dashboard page: log in


# --- the API page -------------------------------------------------------------------------


def test_the_api_page_has_curl_examples_with_the_new_key_then_its_prefix(logged_in_client, project):
    url = reverse("api-keys", args=[project.slug])
    page = logged_in_client.post(url, {"name": "Web shop"}).content.decode()
    start = page.index('id="new-api-key"')
    plaintext = page[page.index(">", start) + 1 : page.index("</code>", start)]
    recommendations = page[page.index('id="curl-recommendations"') :]
    recommendations = recommendations[: recommendations.index("</pre>")]
    assert (
        "http://testserver/api/v1/recommendations?user_id=u1&amp;num_results=10" in recommendations
    )
    assert f"Authorization: Bearer {plaintext}" in recommendations
    assert reverse("api-docs") in page

    later = logged_in_client.get(url).content.decode()
    assert plaintext not in later
    prefix = ApiKey.objects.get(project=project).prefix
    assert f"Bearer {prefix}_&lt;rest-of-the-key&gt;" in later
    assert "6000 requests per minute" in later
