"""The Images + sounds tab in a real browser (Debian's chromium via Playwright) on the tiny bundle."""

import re

from playwright.sync_api import expect


def test_a_text_search_shows_images_and_sounds_in_one_gallery(tiny_app, page):
    page.goto(tiny_app[1])
    page.get_by_role("tab", name="Images + sounds", exact=True).click()
    query = page.locator("#mixed-query textarea")
    query.fill("a red circle with a rising chirp")
    page.get_by_role("button", name="Search", exact=True).click()
    notes = page.locator("#mixed-notes")
    expect(notes).to_contain_text(re.compile(r"\d+ image\(s\) and \d+ sound\(s\)"), timeout=90_000)
    expect(notes).to_contain_text("one space")
    table = page.locator("#mixed-table")
    expect(table.get_by_role("row").filter(has_text="03-loud-rising-chirp.wav")).to_contain_text("sound")
    expect(table.get_by_role("row").filter(has_text=".png").first).to_contain_text("image")
    gallery = page.locator("#mixed-results")
    expect(gallery.get_by_role("img").first).to_be_visible()
    expect(gallery).to_contain_text("sound · 03-loud-rising-chirp.wav")  # a sound, among the pictures
    expect(page.locator("#mixed-player audio, #mixed-player [data-testid='waveform-controls']").first).to_be_attached()
