"""The Compare tab in a real browser (Debian's chromium via Playwright) on the tiny bundle."""

from pathlib import Path

import pytest
from playwright.sync_api import expect


@pytest.fixture(scope="module")
def examples():
    from mmdemo.settings import Settings
    from mmdemo.tasks.classify import generated_examples

    # The same seeded rows the tab lists (written to the same cache folder).
    return generated_examples(Path(Settings().cache_dir) / "examples" / "classify")


def open_compare(page, url, sub=None):
    page.goto(url)
    page.get_by_role("tab", name="Compare", exact=True).click()
    if sub:
        page.get_by_role("tab", name=sub, exact=True).click()


def test_pick_two_models_compare_and_see_both_rows(tiny_app, page, examples):
    scene = next(e for e in examples if e["task"] == "scene_qa")
    open_compare(page, tiny_app[1])
    picker = page.locator("#compare-models")
    # Start from nothing: remove the profile's picks, then pick two models from the list.
    picker.get_by_role("button", name="Clear", exact=True).click()
    expect(picker).not_to_contain_text("tiny-clip")
    page.get_by_role("button", name="Compare models", exact=True).click()
    expect(page.get_by_text("Pick at least 2 different models").first).to_be_visible(timeout=30_000)
    for name in ("tiny-coca", "tiny-clip"):
        picker.get_by_role("combobox").click()
        page.get_by_role("option", name=name, exact=True).click()
    expect(picker).to_contain_text("tiny-coca")
    expect(picker).to_contain_text("tiny-clip")
    page.get_by_role("row").filter(has_text=scene["zero_shot_labels"][0]).first.click()  # an example scene
    expect(page.locator("#compare-texts textarea")).to_have_value("\n".join(scene["zero_shot_labels"]))
    page.get_by_role("button", name="Compare models", exact=True).click()
    # Models load on first use (the progress bar names each): wait for the answer itself.
    expect(page.locator("#compare-summary")).to_contain_text("agree", timeout=90_000)
    table = page.locator("#compare-table")
    expect(table.get_by_role("row").filter(has_text="tiny-coca")).to_contain_text("captioner")
    expect(table.get_by_role("row").filter(has_text="tiny-clip")).to_contain_text("clip")
    for text in scene["zero_shot_labels"]:
        expect(table).to_contain_text(text)  # one column per candidate
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible()


def test_every_head_on_a_generated_example(tiny_app, page, examples):
    row = next(e for e in examples if e["task"] == "scene_qa")
    open_compare(page, tiny_app[1], "Every fusion head")
    page.get_by_text(row["text"], exact=True).first.click()  # a row of the generated examples table
    expect(page.locator("#compare-heads-text textarea")).to_have_value(row["text"])
    page.get_by_role("button", name="Compare heads", exact=True).click()
    summary = page.locator("#compare-heads-summary")
    expect(summary).to_contain_text("5 of 10 heads ran on image + text", timeout=90_000)
    table = page.locator("#compare-heads-table")
    expect(table).to_contain_text("tiny-head-scene_qa-gated")
    expect(table).to_contain_text("add the audio")  # the sound heads say what they need
    expect(page.locator("#compare-heads-plot .js-plotly-plot")).to_be_visible()
