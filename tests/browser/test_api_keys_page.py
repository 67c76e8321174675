import json
import urllib.error
import urllib.request

from playwright.sync_api import expect

from datasets.models import ApiKey, Interaction
from datasets.services import create_project


def post_events(live_server, key, events):
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_create_a_key_use_it_then_revoke_it(page, live_server, user, log_in, screenshot):
    project = create_project(name="Shoe shop", owner=user)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(user)
    page.goto(f"/p/{project.slug}/")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.get_by_text("No keys yet.")).to_be_visible()

    page.fill("#id_name", "Web shop backend")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key").inner_text().strip()
    assert key.startswith("rs_")
    curl = page.locator("#curl-example").inner_text()
    assert f"curl -X POST {live_server.url}/api/v1/events" in curl
    assert f"Authorization: Bearer {key}" in curl
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot("api-key-created")

    events = [
        {"user_id": "u1", "item_id": "shoe-1", "event_type": "view"},
        {"user_id": "u1", "item_id": "shoe-2", "event_type": "view", "timestamp": "2024-05-01"},
        {"user_id": "u2", "item_id": ""},
    ]
    status, body = post_events(live_server, key, events)
    assert status == 200
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 2, "errors": {"item_id": ["Must not be empty."]}}]
    assert Interaction.objects.filter(project=project).count() == 2

    page.reload()  # a GET now: the key is gone from the page, its use is shown
    expect(page.locator("#new-api-key")).to_have_count(0)
    assert key not in page.content()
    row = page.locator("#api-key-table tbody tr", has_text="Web shop backend")
    expect(row).to_contain_text(ApiKey.objects.get().prefix)
    expect(row).to_contain_text("Active")
    expect(row).not_to_contain_text("never")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".message.success")).to_contain_text("Revoked “Web shop backend”")
    expect(row).to_contain_text("Revoked")
    screenshot("api-key-revoked")

    status, body = post_events(live_server, key, events[:1])
    assert status == 401
    assert body["error"]["code"] == "not_authenticated"
    assert Interaction.objects.filter(project=project).count() == 2


def test_dismissing_the_confirmation_keeps_the_key(page, user, log_in):
    project = create_project(name="Shoe shop", owner=user)
    log_in(user)
    page.goto(f"/p/{project.slug}/api-keys/")
    page.fill("#id_name", "Keep me")
    page.get_by_role("button", name="Create key").click()
    page.goto(f"/p/{project.slug}/api-keys/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#api-key-table")).to_contain_text("Active")
    assert ApiKey.objects.get().is_active
