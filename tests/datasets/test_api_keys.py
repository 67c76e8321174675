import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from datasets.models import ApiKey
from datasets.services import add_member, create_api_key, create_project, revoke_api_key

pytestmark = pytest.mark.django_db

EVENT = {"events": [{"user_id": "u1", "item_id": "i1"}]}


def post_events(client, key=None, body=EVENT, **headers):
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return client.post(
        reverse("api-events"), json.dumps(body), content_type="application/json", headers=headers
    )


def assert_not_authenticated(response, fragment):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert fragment in error["message"]


# --- keys at rest -------------------------------------------------------------------------


def test_a_key_is_stored_only_as_a_hash_with_a_display_prefix(project, user):
    api_key, plaintext = create_api_key(project=project, name=" Web shop ", created_by=user)
    assert plaintext.startswith(api_key.prefix + "_")
    assert len(api_key.prefix) == len("rs_") + 8
    assert len(plaintext.split("_", 2)[2]) >= 32
    stored = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert stored["name"] == "Web shop"
    assert stored["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]
    assert not any(secret in str(value) for value in stored.values())


def test_every_key_is_different(project):
    keys = {create_api_key(project=project, name=f"k{i}")[1] for i in range(20)}
    assert len(keys) == 20


# --- authentication -----------------------------------------------------------------------


def test_a_request_without_a_key_gets_401_json_not_the_login_redirect(client, project):
    assert_not_authenticated(post_events(client), "Authorization: Bearer")


def test_a_logged_in_browser_session_is_not_an_api_key(logged_in_client, project):
    assert_not_authenticated(post_events(logged_in_client), "Authorization: Bearer")


@pytest.mark.parametrize(
    "key",
    ["nonsense", "rs_abcdefgh_" + "x" * 43, "", "rs_abc_short"],
    ids=["malformed", "unknown", "empty", "too-short"],
)
def test_a_wrong_key_gets_401(client, project, key):
    create_api_key(project=project, name="real")
    assert_not_authenticated(post_events(client, key), "Invalid API key")


def test_a_key_with_a_known_prefix_but_wrong_secret_gets_401(client, project):
    api_key, plaintext = create_api_key(project=project, name="real")
    forged = plaintext[:-4] + ("aaaa" if not plaintext.endswith("aaaa") else "bbbb")
    assert_not_authenticated(post_events(client, forged), "Invalid API key")


def test_a_revoked_key_gets_401_at_once(client, project):
    api_key, plaintext = create_api_key(project=project, name="old")
    assert post_events(client, plaintext).status_code == 200
    revoke_api_key(api_key=api_key)
    assert_not_authenticated(post_events(client, plaintext), "revoked")


def test_another_scheme_is_not_a_key(client, project):
    response = post_events(client, authorization="Basic dXNlcjpwYXNz")
    assert_not_authenticated(response, "Authorization: Bearer")


def test_last_used_is_written_at_most_once_a_minute(client, project):
    api_key, plaintext = create_api_key(project=project, name="k")
    assert post_events(client, plaintext).status_code == 200
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None

    with CaptureQueriesContext(connection) as queries:
        assert post_events(client, plaintext).status_code == 200
    assert not [q for q in queries if q["sql"].startswith('UPDATE "datasets_apikey"')]
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use

    two_minutes_ago = first_use - timedelta(minutes=2)
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=two_minutes_ago)
    assert post_events(client, plaintext).status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at >= first_use


# --- the keys page ------------------------------------------------------------------------


def test_creating_a_key_shows_it_once_with_a_curl_example(logged_in_client, project, user):
    url = reverse("api-keys", args=[project.slug])
    response = logged_in_client.post(url, {"name": "Web shop"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    api_key = ApiKey.objects.get(project=project)
    assert api_key.created_by == user
    page = response.content.decode()
    start = page.index('id="new-api-key"')
    plaintext = page[page.index(">", start) + 1 : page.index("</code>", start)]
    assert api_key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert f"curl -X POST http://testserver{reverse('api-events')}" in page
    assert f"Authorization: Bearer {plaintext}" in page

    later = logged_in_client.get(url).content.decode()
    assert plaintext not in later
    assert api_key.prefix in later
    assert "$RECSITE_API_KEY" in later


def test_a_key_needs_a_name(logged_in_client, project):
    response = logged_in_client.post(reverse("api-keys", args=[project.slug]), {"name": "  "})
    assert "Give the key a name." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_from_the_page(logged_in_client, project):
    api_key, plaintext = create_api_key(project=project, name="Old app")
    response = logged_in_client.post(reverse("api-key-revoke", args=[project.slug, api_key.pk]))
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    page = logged_in_client.get(reverse("api-keys", args=[project.slug])).content.decode()
    assert "Revoked" in page
    assert post_events(Client(), plaintext).status_code == 401


def test_revoking_needs_the_csrf_token(project, user):
    api_key, _ = create_api_key(project=project, name="k")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(reverse("api-key-revoke", args=[project.slug, api_key.pk]))
    assert response.status_code == 403
    api_key.refresh_from_db()
    assert api_key.is_active


def test_a_non_member_cannot_see_or_revoke_keys(client, project, other_user):
    api_key, _ = create_api_key(project=project, name="k")
    client.force_login(other_user)
    assert client.get(reverse("api-keys", args=[project.slug])).status_code == 404
    revoke = reverse("api-key-revoke", args=[project.slug, api_key.pk])
    assert client.post(revoke).status_code == 404
    api_key.refresh_from_db()
    assert api_key.is_active


def test_a_key_of_another_project_cannot_be_revoked_through_mine(logged_in_client, user):
    mine = create_project(name="Mine", owner=user)
    theirs_key, _ = create_api_key(project=create_project(name="Theirs", owner=user), name="k")
    response = logged_in_client.post(reverse("api-key-revoke", args=[mine.slug, theirs_key.pk]))
    assert response.status_code == 404
    theirs_key.refresh_from_db()
    assert theirs_key.is_active


def test_a_viewer_sees_keys_but_cannot_create_or_revoke(client, project, other_user):
    api_key, _ = create_api_key(project=project, name="Shop backend")
    add_member(project=project, user=other_user, role="viewer")
    client.force_login(other_user)
    page = client.get(reverse("api-keys", args=[project.slug])).content.decode()
    assert "Shop backend" in page
    assert "Create key" not in page
    assert client.post(reverse("api-keys", args=[project.slug]), {"name": "x"}).status_code == 403
    revoke = reverse("api-key-revoke", args=[project.slug, api_key.pk])
    assert client.post(revoke).status_code == 403
    assert ApiKey.objects.count() == 1
    api_key.refresh_from_db()
    assert api_key.is_active


def test_the_project_nav_links_to_the_keys_page(logged_in_client, project):
    page = logged_in_client.get(reverse("project-overview", args=[project.slug])).content.decode()
    assert f'href="{reverse("api-keys", args=[project.slug])}"' in page


def test_keys_page_lists_status_and_last_use(logged_in_client, project):
    used, plaintext = create_api_key(project=project, name="Used")
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=timezone.now() - timedelta(hours=3))
    revoke_api_key(api_key=create_api_key(project=project, name="Gone")[0])
    page = logged_in_client.get(reverse("api-keys", args=[project.slug])).content.decode()
    assert "3\xa0hours ago" in page
    assert "Active" in page
    assert "Revoked" in page
    assert "never" in page
