"""The Audio tab in a real browser (Debian's chromium via Playwright) on the tiny bundle."""

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from mmdemo.toyworld import sounds as S

SR = S.SAMPLE_RATE


def sound(kind, variant, seconds):
    return S.render_sound(S.SoundSpec((S.SoundEvent(kind, variant, seconds, 0.0),), True, 3))


@pytest.fixture
def two_sounds(tmp_path):
    path = tmp_path / "chirp then noise.wav"
    sf.write(path, np.concatenate([sound("chirp", "rising", 4.0), sound("noise", "white", 4.0)]), SR)
    return path


def open_audio_tab(page, url, sub=None):
    page.goto(url)
    page.get_by_role("tab", name="Audio", exact=True).click()
    if sub:
        page.get_by_role("tab", name=sub, exact=True).click()


def upload(page, elem_id, path):
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    # The player replaces the drop zone once the upload is in (its file name is not
    # always shown, and a loaded machine takes a while: wait for the player itself).
    player = page.locator(f"#{elem_id} audio, #{elem_id} [data-testid=waveform-Audio]").first
    expect(player).to_be_attached(timeout=30_000)


def test_match_clip_shows_ranking_pictures_and_timeline(tiny_app, page, two_sounds):
    open_audio_tab(page, tiny_app[1])
    upload(page, "audio-match-clip", two_sounds)
    page.get_by_role("button", name="Match", exact=True).click()
    expect(page.get_by_text("Best match:")).to_be_visible(timeout=60_000)
    summary = page.get_by_text("Best match:").inner_text()
    assert "rising chirp" in summary or "white noise" in summary
    expect(page.locator("#audio-timeline .js-plotly-plot")).to_be_visible()
    expect(page.locator("#audio-timeline")).to_contain_text("Similarity over time")
    expect(page.locator("#audio-heard")).to_contain_text("Log-mel the model heard")
    # The per-label table says where each sound is: the chirp first, the noise last.
    rows = page.locator("#audio-best-table").get_by_role("row")
    expect(rows.filter(has_text="a rising chirp")).to_contain_text("0.0–4.0 s")
    expect(rows.filter(has_text="a burst of white noise")).to_contain_text("4.0–8.0 s")


def test_search_sounds_plays_results(tiny_app, page):
    from mmdemo.settings import Settings
    from mmdemo.tasks.audio import default_gallery_files
    from tests.helpers.galleries import unique_caption

    name, caption = unique_caption(default_gallery_files(Settings().cache_dir))  # the app's own examples
    open_audio_tab(page, tiny_app[1], "Search sounds by text")
    page.get_by_label("Describe the sound", exact=True).fill(caption)
    page.get_by_role("button", name="Search sounds", exact=True).click()
    best = page.locator("#audio-sounds-table").get_by_role("row").nth(1)  # row 0 is the header
    expect(best).to_contain_text(name, timeout=60_000)
    expect(best).to_contain_text(caption)
    player = page.locator("#audio-player-0")
    expect(player).to_contain_text("#1 ")
    expect(player.locator("audio, canvas, [data-testid=waveform-Audio]").first).to_be_attached()
    expect(page.locator("#audio-player-2")).to_contain_text("#3 ")


def test_search_texts_by_audio(tiny_app, page, tmp_path):
    path = tmp_path / "falling.wav"
    sf.write(path, sound("chirp", "falling", 3.0), SR)
    open_audio_tab(page, tiny_app[1], "Search texts by audio")
    upload(page, "audio-texts-clip", path)
    page.get_by_role("button", name="Search texts", exact=True).click()
    top = page.locator("#audio-texts-table").get_by_role("row").nth(1)
    expect(top).to_contain_text("a falling chirp", timeout=60_000)


def test_example_button_needs_no_file(tiny_app, page):
    open_audio_tab(page, tiny_app[1])
    page.get_by_role("button", name="Try an example clip (a chirp, then noise)", exact=True).click()
    expect(page.locator("#audio-match-clip audio, #audio-match-clip [data-testid=waveform-Audio]").first).to_be_attached()
    page.get_by_role("button", name="Match", exact=True).click()
    rows = page.locator("#audio-best-table").get_by_role("row")
    expect(rows.filter(has_text="a burst of white noise")).to_contain_text("4.0–8.0 s", timeout=60_000)
