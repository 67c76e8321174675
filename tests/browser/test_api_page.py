"""The API page's curl examples and Copy buttons, and the Swagger UI docs page served locally."""

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

from datasets.services import create_project


def test_copy_the_recommendations_curl_example(page, live_server, user, log_in, screenshot):
    project = create_project(name="Shoe shop", owner=user)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(user)
    page.goto(f"/p/{project.slug}/api-keys/")
    page.fill("#id_name", "Web shop backend")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key").inner_text().strip()

    example = page.locator("#curl-recommendations")
    text = example.inner_text()
    assert f'curl "{live_server.url}/api/v1/recommendations?user_id=u1&num_results=10"' in text
    assert f"Authorization: Bearer {key}" in text
    page.locator("#copy-recommendations").click()
    expect(page.locator("#copy-recommendations")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == text.strip()
    expect(page.locator("#copy-recommendations")).to_have_text("Copy example", timeout=5000)
    screenshot("api-page-new-key")

    page.reload()  # later the key is gone: a placeholder with its prefix takes its place
    text = page.locator("#curl-recommendations").inner_text()
    prefix = key.split("_")[0] + "_" + key.split("_")[1]
    assert f"Authorization: Bearer {prefix}_<rest-of-the-key>" in text
    assert key not in page.content()
    screenshot("api-page-later")


def test_copy_falls_back_without_the_clipboard_api(page, user, log_in):
    project = create_project(name="Shoe shop", owner=user)
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    log_in(user)
    page.goto(f"/p/{project.slug}/api-keys/")
    page.locator("#copy-events").click()
    # execCommand("copy") where the browser allows it; else the text is selected for Ctrl+C.
    expect(page.locator("#copy-events")).to_have_text(
        re.compile(r"^(Copied|Selected: press Ctrl\+C)$")
    )
    if page.locator("#copy-events").inner_text() != "Copied":
        assert "curl -X POST" in page.evaluate("window.getSelection().toString()")


def test_swagger_docs_load_without_external_requests(page, live_server, user, log_in, screenshot):
    project = create_project(name="Shoe shop", owner=user)
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc or request.url[:10]))
    log_in(user)
    page.goto(f"/p/{project.slug}/api-keys/")
    page.get_by_role("link", name="Interactive API docs").click()
    expect(page.locator(".swagger-ui .title")).to_contain_text("recsite API")
    expect(
        page.locator(".opblock-summary-path", has_text="/api/v1/recommendations")
    ).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/events")).to_be_visible()

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    expect(dialog).to_contain_text("Bearer")
    dialog.locator("input").first.fill("rs_abcdefgh_not-a-real-key")
    dialog.locator("button.authorize").click()  # labelled "Apply credentials" for screen readers
    expect(dialog.locator("button", has_text="Logout")).to_be_visible()
    screenshot("api-docs-authorized")
    dialog.locator("button.btn-done").click()
    screenshot("api-docs")

    assert hosts == {urlsplit(live_server.url).netloc}, hosts
