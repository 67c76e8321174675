import time

from playwright.sync_api import expect

from datasets.services import create_project
from tests.datasets.insights_data import load_project_data, synthetic_shop

CHARTS = ("activity", "user-tail", "item-tail", "top-items", "categories")


def test_insights_page_draws_every_chart(page, user, log_in, screenshot):
    project = create_project(name="Garden centre", owner=user)
    frame, items, users = synthetic_shop(n_interactions=5000, now=int(time.time()) - 3600)
    load_project_data(project, frame, items=items, users=users)

    log_in(user)
    page.goto(f"/p/{project.slug}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Insights").click()

    expect(page.get_by_role("heading", name="Insights", exact=True)).to_be_visible()
    expect(page.locator(".stat").first).to_contain_text("5,000")
    for key in CHARTS:
        # Plotly adds .main-svg once the figure is drawn.
        expect(page.locator(f"#chart-{key}.js-plotly-plot .main-svg").first).to_be_visible()
    expect(page.locator("#chart-top-items .bars path")).to_have_count(20)
    path = screenshot("insights")
    assert path.stat().st_size > 50_000


def test_empty_project_shows_how_to_get_data(page, user, log_in):
    project = create_project(name="New shop", owner=user)

    log_in(user)
    page.goto(f"/p/{project.slug}/insights/")

    expect(page.locator(".empty")).to_contain_text("No interactions yet")
    expect(page.locator(".js-plotly-plot")).to_have_count(0)
