"""Prompt ensembles in a real browser (Debian's chromium via Playwright) on the tiny bundle:
the user picks a built-in template set, the textbox fills, the scores change."""

import pytest
import soundfile as sf
from PIL import Image
from playwright.sync_api import expect

from mmdemo.tasks import prompts
from mmdemo.toyworld import scenes
from mmdemo.toyworld import sounds as S

# None of them is the pictured blue star: the scores are spread, so the ensemble's
# change shows in the percentages (bare "a {}": 62% blue cross; ensemble: 69%).
LABELS = "blue diamond\nblue cross\nblue heart\nblue ring"


@pytest.fixture
def star(tmp_path):
    path = tmp_path / "blue star.png"
    scene = scenes.Scene((scenes.SceneObject("star", "blue", "large", 0.5, 0.5),), "plain")
    Image.fromarray(scenes.render_scene(scene, size=64)).save(path)
    return path


def pick(page, elem_id, title):
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=title, exact=True).click()


def test_zero_shot_with_the_built_in_set(tiny_app, page, star):
    page.goto(tiny_app[1])
    page.get_by_role("tab", name="Classify", exact=True).click()
    page.get_by_role("tab", name="Zero-shot", exact=True).click()
    page.locator("#zs-image input[type=file]").set_input_files(str(star))
    expect(page.locator("#zs-image img")).to_be_attached(timeout=30_000)
    page.locator("#zs-labels textarea").fill(LABELS)
    page.get_by_role("button", name="Score labels", exact=True).click()
    info, label = page.locator("#zs-info"), page.locator("#zs-label")
    expect(info).to_contain_text("Weights used", timeout=60_000)
    expect(info).not_to_contain_text("templates' embeddings")
    before = label.inner_text()

    title, _ = prompts.builtin_choices("image")[0]  # the tiny-world set
    pick(page, "zs-template-set", title)
    expect(page.locator("#zs-templates textarea")).to_have_value(prompts.builtin_set("image", "tiny-world").text)
    page.get_by_role("button", name="Score labels", exact=True).click()
    expect(info).to_contain_text("average of 10 templates' embeddings", timeout=60_000)
    expect(label).to_contain_text("blue cross")
    assert label.inner_text() != before, before

    # A template the user breaks is named in an error; the page keeps working.
    page.locator("#zs-templates textarea").fill("a photo of")
    page.get_by_role("button", name="Score labels", exact=True).click()
    expect(page.get_by_text("'a photo of' must contain {} exactly once").first).to_be_visible(timeout=30_000)


def test_match_audio_with_the_built_in_set(tiny_app, page, tmp_path):
    path = tmp_path / "noise.wav"
    sf.write(path, S.render_sound(S.SoundSpec((S.SoundEvent("noise", "white", 3.0, 0.0),), True, 3)), S.SAMPLE_RATE)
    page.goto(tiny_app[1])
    page.get_by_role("tab", name="Audio", exact=True).click()
    page.locator("#audio-match-clip input[type=file]").set_input_files(str(path))
    expect(page.locator("#audio-match-clip audio, #audio-match-clip [data-testid=waveform-Audio]").first
           ).to_be_attached(timeout=30_000)
    title, _ = prompts.builtin_choices("audio")[0]
    pick(page, "audio-template-set", title)
    templates = page.get_by_label("Prompt templates (optional, one per line)")
    expect(templates).to_have_value(prompts.builtin_set("audio", "tiny-world").text)
    page.get_by_role("button", name="Match", exact=True).click()
    expect(page.get_by_text("Best match:")).to_contain_text("white noise", timeout=60_000)
    expect(page.get_by_text("Templates: 4 templates averaged (“{}”, …)")).to_be_visible()
