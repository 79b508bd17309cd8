"""One pass over the four tabs in a real browser (Debian's chromium via Playwright) on the
``real`` test profile: open_clip CLIP and CoCa and a CLAP, all random tiny weights.

The answers mean nothing on random weights; what a user must see is an answer in each
result component and no error toast, and the Models table naming the real backends.
"""

import re
from pathlib import Path

import numpy as np
import soundfile as sf
from playwright.sync_api import expect

ERROR_TOAST = ".toast-body.error"


def open_tab(page, name, sub=None):
    page.get_by_role("tab", name=name, exact=True).click()
    if sub:
        page.get_by_role("tab", name=sub, exact=True).click()


def no_error_toast(page):
    expect(page.locator(ERROR_TOAST)).to_have_count(0)


def test_one_pass_over_every_tab_on_real_backends(real_app, page, tmp_path):
    from mmdemo.settings import Settings
    from mmdemo.tasks.classify import generated_examples
    from mmdemo.toyworld import sounds as S

    page.set_viewport_size({"width": 1300, "height": 1000})
    page.goto(real_app[1])
    expect(page.get_by_text("Profile real.")).to_be_visible()

    # Image: caption the first example scene with the CoCa (beam search, open_clip's BPE tokens).
    open_tab(page, "Image")
    page.locator("#image-caption-examples button.gallery-item").first.click()
    expect(page.locator("#image-caption-input img").first).to_be_visible()
    page.get_by_role("button", name="Caption", exact=True).click()
    expect(page.locator("#image-captions textarea")).to_have_value(re.compile(r"\S"), timeout=60_000)
    no_error_toast(page)

    # Audio: the example clip through the CLAP (one 10 s window at 48 kHz).
    open_tab(page, "Audio")
    page.get_by_role("button", name="Try an example clip (a chirp, then noise)", exact=True).click()
    player = page.locator("#audio-match-clip audio, #audio-match-clip [data-testid=waveform-Audio]")
    expect(player.first).to_be_attached()
    page.get_by_role("button", name="Match", exact=True).click()
    summary = page.get_by_text("Best match:")
    expect(summary).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"→ mono 48 kHz, 1 window\(s\)"))).to_be_visible()
    rows = page.locator("#audio-best-table").get_by_role("row")
    expect(rows).to_have_count(7)  # the header and the six default labels
    expect(rows.nth(1)).to_contain_text("0.0–8.0 s")
    expect(page.locator("#audio-heard")).to_contain_text("Log-mel the model heard")
    no_error_toast(page)

    # Classify, zero-shot: an example scene, a text and a clip, each modality scored alone too.
    wave = S.render_sound(S.SoundSpec((S.SoundEvent("chirp", "rising", 3.0, 0.0),), True, 1))
    clip = tmp_path / "chirp.wav"
    sf.write(clip, np.asarray(wave), S.SAMPLE_RATE)
    scene = next(e for e in generated_examples(Path(Settings().cache_dir) / "examples" / "classify")
                 if e["task"] == "scene_qa")  # the rows the tab lists
    open_tab(page, "Classify", "Zero-shot")
    page.get_by_role("row").filter(has_text=scene["zero_shot_labels"][0]).first.click()
    expect(page.locator("#zs-labels textarea")).to_have_value("\n".join(scene["zero_shot_labels"]))
    page.locator("#zs-text textarea, #zs-text input").first.fill("a shape on a background")
    page.locator("#zs-audio input[type=file]").set_input_files(str(clip))
    # The player replaces the drop zone once the upload is in (its file name is not always shown).
    expect(page.locator("#zs-audio audio, #zs-audio [data-testid=waveform-Audio]").first).to_be_attached(
        timeout=30_000)
    page.get_by_role("button", name="Score labels", exact=True).click()
    info = page.locator("#zs-info")
    expect(info).to_contain_text("Weights used", timeout=60_000)
    expect(info).to_contain_text("audio 0.25")
    expect(page.locator("#zs-label")).to_contain_text("%")
    expect(page.locator("#zs-plot")).to_contain_text("audio alone")
    no_error_toast(page)

    # Models: the real profile's entries, where their weights came from, the CLAP now loaded.
    open_tab(page, "Models")
    page.get_by_role("button", name="Refresh", exact=True).click()
    expect(page.get_by_text("Profile: real")).to_be_visible()
    for name, source in (("dir-clip", "local-dir:"), ("file-coca", "coca.safetensors"),
                         ("hub-clap", "hf-hub:mmdemo-test/tiny-clap")):
        row = page.get_by_role("row").filter(has_text=re.compile(rf"^\s*{name}\b"))
        expect(row).to_contain_text(re.compile(r"\bloaded\b"))
        expect(row).to_contain_text(source)
    no_error_toast(page)
