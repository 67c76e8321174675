"""The top bar fits on one line at 1280 px, even for a staff user who also sees "Admin"."""

import pytest
from playwright.sync_api import expect

from datasets.services import create_project


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        selector,
        """elements => elements.map(e => {
            const r = e.getBoundingClientRect();
            return {text: e.textContent.trim(), top: r.top, bottom: r.bottom,
                    middle: (r.top + r.bottom) / 2, right: r.right};
        })""",
    )


@pytest.mark.parametrize("staff", [True, False], ids=["staff", "not-staff"])
def test_the_nav_is_one_line_at_1280_px(page, make_user, log_in, screenshot, staff):
    user = make_user("alexandra.longname", is_staff=staff)
    project = create_project(name="A project with a rather long name", owner=user)
    log_in(user)
    page.goto(f"/p/{project.slug}/")
    assert page.viewport_size == {"width": 1280, "height": 800}
    expect(page.locator(".account")).to_contain_text(user.username)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    if not staff:
        expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    screenshot(f"nav-1280-{'staff' if staff else 'user'}")

    links = boxes(page, ".mainnav a")
    assert len(links) == 12, [link["text"] for link in links]
    tops = {round(link["top"]) for link in links}
    assert max(tops) - min(tops) <= 1, f"the nav wraps: link tops {sorted(tops)}"

    # Everything else in the bar (brand, project switcher, user name, Admin, Log out) is on
    # the same line as the links, and nothing runs past the window's right edge.
    others = boxes(page, ".topbar > .brand, .topbar select, .account > *")
    nav_middle = links[0]["middle"]
    for other in others:
        assert abs(other["middle"] - nav_middle) <= 6, f"{other['text']!r} is on another line"
        assert other["right"] <= 1280, f"{other['text']!r} runs past the right edge"
    bar = page.locator(".topbar").bounding_box()
    assert bar["height"] < 60, f"the top bar is {bar['height']:.0f} px high (two lines?)"

    if staff:  # Admin is in the menu under the user's name
        admin = page.get_by_role("link", name="Admin")
        expect(admin).to_be_hidden()
        page.locator(".usermenu summary").click()
        expect(admin).to_be_visible()
        menu = admin.bounding_box()
        assert menu["x"] >= 0 and menu["x"] + menu["width"] <= 1280
        screenshot("nav-1280-staff-menu")
        admin.click()
        page.wait_for_url("**/admin/")
        expect(page.locator("#site-name")).to_be_visible()
