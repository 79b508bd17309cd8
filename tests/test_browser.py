"""A real browser (Debian's chromium via Playwright) on the running app."""

import re

from playwright.sync_api import expect


def test_models_tab_load_button_changes_status(test_app, page):
    page.goto(test_app[1])
    page.get_by_role("tab", name="Models", exact=True).click()
    expect(page.get_by_role("row").filter(has_text=re.compile(r"^\s*pt-clip"))).to_contain_text("not loaded")
    # Pick an entry nobody else loads in this session, then press Load.
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="pt-clip", exact=True).click()
    page.get_by_role("button", name="Load", exact=True).click()
    row = page.get_by_role("row").filter(has_text=re.compile(r"^\s*pt-clip"))
    expect(row).to_contain_text(re.compile(r"\bloaded\b"))
    expect(row).to_contain_text("cpu")
