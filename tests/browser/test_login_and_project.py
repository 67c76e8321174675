import re

from playwright.sync_api import expect

from datasets.models import Membership, Project


def test_log_in_create_a_project_and_switch_back(page, user, log_in, screenshot):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    screenshot("login")

    page.fill("#id_username", user.username)
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("didn't match")

    log_in(user)
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    page.get_by_role("link", name="Create your first project").click()
    page.fill("#id_name", "Garden centre")
    page.fill("#id_description", "Plants and tools")
    page.get_by_role("button", name="Create project").click()

    expect(page.get_by_role("heading", name="Garden centre")).to_be_visible()
    expect(page.locator(".message.success")).to_contain_text("Garden centre")
    expect(page.locator("#project-switcher")).to_have_value("/p/garden-centre/")
    path = screenshot("project-created")
    assert path.stat().st_size > 10_000

    project = Project.objects.get(slug="garden-centre")
    assert Membership.objects.get(project=project).user == user

    page.select_option("#project-switcher", label="All projects")
    expect(page.get_by_role("link", name="Garden centre")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
