"""Why it matched, in a real browser (Debian's chromium via Playwright) on the tiny bundle:
the map appears beside a ranking, follows the text and method the user picks, and the
Audio tab shows when a sound matched."""

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from tests.test_audio_browser import open_audio_tab, sound, upload
from tests.helpers.browser import open_image_tab
from tests.test_image_browser import pick_example, scenes  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def map_src(page, prefix):
    return page.locator(f"#{prefix}-why-map img").first


def test_ranking_shows_where_the_best_caption_matched(tiny_app, page, scenes):  # noqa: F811
    path, caption = scenes[0]
    open_image_tab(page, tiny_app[1])
    pick_example(page, "image-caption-examples", 0, path)
    page.get_by_role("button", name="Rank captions", exact=True).click()
    picture = map_src(page, "image-rank")
    expect(picture).to_be_visible(timeout=90_000)
    first = picture.get_attribute("src")
    notes = page.locator("#image-rank-why-notes")
    expect(notes).to_contain_text("cosine similarity")
    best = page.locator("#image-rank-why-text input").input_value()
    expect(notes).to_contain_text(best)
    # Another method redraws the map for the same text.
    page.get_by_label("patch-token similarity (tokens)").check()
    expect(notes).to_contain_text("tokens:", timeout=60_000)
    expect(picture).not_to_have_attribute("src", first)
    # A text the user types gets its own map.
    box = page.locator("#image-rank-why-text input")
    box.fill("a large green ring")
    box.press("Enter")
    expect(notes).to_contain_text("a large green ring", timeout=60_000)


def test_search_shows_where_the_query_matched_the_best_image_and_a_clicked_one(tiny_app, page):
    open_image_tab(page, tiny_app[1], "Search images by text")
    page.locator("#image-query textarea, #image-query input").first.fill("a red diamond")
    page.get_by_role("button", name="Search images", exact=True).click()
    notes = page.locator("#image-search-why-notes")
    expect(notes).to_contain_text("'a red diamond'", timeout=90_000)
    # The map is drawn on the example scene itself: its cosine is the search's own.
    label = page.locator("#image-results").get_by_text("#1 ·").first.inner_text()  # "#1 · 0.660 · name.png"
    expect(notes).to_contain_text(f"cosine similarity {label.split(' · ')[1]}")
    picture = map_src(page, "image-search")
    first = picture.get_attribute("src")
    page.locator("#image-results button.thumbnail-item, #image-results .thumbnail-item").nth(1).click()
    expect(picture).not_to_have_attribute("src", first, timeout=60_000)


def test_zero_shot_shows_where_the_best_labels_prompt_matched(tiny_app, page, scenes):  # noqa: F811
    from tests.test_classify_browser import open_classify

    path, caption = scenes[0]
    colour, shape = caption.split()[2:4]  # "a small red diamond on ..."
    open_classify(page, tiny_app[1], "Zero-shot")
    page.locator("#zs-image input[type=file]").set_input_files(str(path))
    page.locator("#zs-labels textarea").fill(f"{colour} {shape}\nblue star\ngreen ring")
    page.get_by_role("button", name="Score labels", exact=True).click()
    notes = page.locator("#zs-why-notes")
    expect(notes).to_contain_text("cosine similarity", timeout=90_000)
    expect(page.locator("#zs-why-map img").first).to_be_visible()
    best = page.locator("#zs-why-text input").input_value()
    assert best.startswith("a ") and best[2:] in (f"{colour} {shape}", "blue star", "green ring")


def test_match_audio_shows_when_the_sound_matched(tiny_app, page, tmp_path):
    path = tmp_path / "chirp.wav"
    sf.write(path, np.concatenate([np.zeros(S_RATE, np.float32), sound("chirp", "rising", 2.5)]), S_RATE)
    open_audio_tab(page, tiny_app[1])
    upload(page, "audio-match-clip", path)
    page.get_by_role("button", name="Match", exact=True).click()
    expect(page.locator("#audio-match-why-map .js-plotly-plot")).to_be_visible(timeout=90_000)
    expect(page.locator("#audio-match-why-notes")).to_contain_text("cosine similarity", timeout=60_000)


def test_search_sounds_shows_when_the_best_sound_matched_the_query(tiny_app, page):
    open_audio_tab(page, tiny_app[1], "Search sounds by text")
    page.get_by_role("button", name="Search sounds", exact=True).click()
    expect(page.locator("#audio-search-why-map .js-plotly-plot")).to_be_visible(timeout=90_000)
    expect(page.locator("#audio-search-why-notes")).to_contain_text("'a rising chirp'")


def test_search_texts_by_audio_shows_when_the_best_text_matched(tiny_app, page, tmp_path):
    path = tmp_path / "noise.wav"
    sf.write(path, sound("noise", "white", 3.0), S_RATE)
    open_audio_tab(page, tiny_app[1], "Search texts by audio")
    upload(page, "audio-texts-clip", path)
    page.get_by_role("button", name="Search texts", exact=True).click()
    expect(page.locator("#audio-texts-why-map .js-plotly-plot")).to_be_visible(timeout=90_000)
    best = page.locator("#audio-texts-why-text input").input_value()
    assert best
    expect(page.locator("#audio-texts-why-notes")).to_contain_text(best)


from mmdemo.toyworld.sounds import SAMPLE_RATE as S_RATE  # noqa: E402


def test_classify_shows_where_the_text_matched_the_image(tiny_app, page):
    from tests.test_classify_browser import examples as _  # noqa: F401 - same generated rows
    from tests.test_classify_browser import open_classify

    open_classify(page, tiny_app[1])
    row = page.locator("table tbody tr").first
    row.click()
    text = page.locator("#classify-text textarea").input_value()
    page.get_by_role("button", name="Classify", exact=True).click()
    if text.strip():
        expect(page.locator("#classify-why-notes")).to_contain_text(text.strip(), timeout=90_000)
        expect(page.locator("#classify-why-map img").first).to_be_visible()
    else:  # an example without text: no map, and no error either
        expect(page.locator("#classify-info")).to_contain_text("from", timeout=90_000)
        expect(page.locator(".toast-body.error")).to_have_count(0)
