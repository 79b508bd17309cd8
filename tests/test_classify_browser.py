"""The Classify tab in a real browser (Debian's chromium via Playwright) on the tiny bundle."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers.datasets import write_dataset


@pytest.fixture(scope="module")
def examples():
    from mmdemo.settings import Settings
    from mmdemo.tasks.classify import generated_examples

    # The same seeded rows the tab lists (written to the same cache folder).
    return generated_examples(Path(Settings().cache_dir) / "examples" / "classify")


def open_classify(page, url, sub=None):
    page.goto(url)
    page.get_by_role("tab", name="Classify", exact=True).click()
    if sub:
        page.get_by_role("tab", name=sub, exact=True).click()


def test_classify_a_generated_example_with_a_trained_head(tiny_app, page, examples):
    row = examples[0]
    open_classify(page, tiny_app[1])
    page.get_by_text(row["text"], exact=True).first.click()  # a row of the generated examples table
    expect(page.locator("#classify-text textarea")).to_have_value(row["text"])
    # The generator's answer sits beside the prediction, so the user can judge the head.
    expect(page.locator("#classify-expected textarea")).to_have_value(row["label"])
    page.get_by_role("button", name="Classify", exact=True).click()
    info = page.locator("#classify-info")
    expect(info).to_contain_text("tiny-head-scene_qa-", timeout=60_000)
    expect(info).to_contain_text("without image")
    expect(page.locator("#classify-label")).to_contain_text("%")
    expect(page.locator("#classify-ablation")).to_contain_text("Modality contribution")
    expect(page.locator("#classify-ablation .js-plotly-plot")).to_be_visible()
    expect(page.locator("#classify-explain .js-plotly-plot")).to_be_visible()
    # A question the user types is no longer the example's: its expected answer goes.
    # (Typed key by key, as a person does: Gradio's input event ignores a programmatic fill.)
    page.locator("#classify-text textarea").press_sequentially(" now")
    expect(page.locator("#classify-expected textarea")).to_have_value("")


def test_every_example_is_answered_right_by_its_head_which_says_how_good_it_is(tiny_app, page, examples):
    """Each generated example, clicked beside the inputs, then Classify: the best bundled head of
    its task gives the generator's answer, and the head's card states its held-out accuracy."""
    assert len(examples) == 7
    open_classify(page, tiny_app[1])
    label, expected = page.locator("#classify-label"), page.locator("#classify-expected textarea")
    wrong = []
    for row in examples:
        # The examples sit beside the inputs: clickable without scrolling past the results.
        cell = page.get_by_text(row["text"], exact=True).first
        assert cell.bounding_box()["y"] < 1200
        cell.click()
        expect(expected).to_have_value(row["label"])
        expect(page.locator("#classify-head-card")).to_contain_text(re.compile("held-out accuracy", re.I), timeout=30_000)
        info = page.locator("#classify-info")
        before = info.inner_text()
        page.get_by_role("button", name="Classify", exact=True).click()
        # This example's answer has landed when the summary changed (probabilities and drops differ).
        expect(info).not_to_have_text(before, timeout=60_000)
        expect(info).to_contain_text(f"tiny-head-{row['task']}-")
        top = label.locator("h2").first  # the label component's heading is the top class; it may land after the summary
        try:
            expect(top).to_have_text(row["label"], timeout=10_000)
        except AssertionError:
            wrong.append((row["text"], row["label"], top.inner_text().strip()))
    assert not wrong, wrong


def test_zero_shot_on_a_generated_scene(tiny_app, page, examples):
    row = next(e for e in examples if e["task"] == "scene_qa")
    open_classify(page, tiny_app[1], "Zero-shot")
    page.get_by_role("row").filter(has_text=row["zero_shot_labels"][0]).first.click()
    expect(page.locator("#zs-labels textarea")).to_have_value("\n".join(row["zero_shot_labels"]))
    page.get_by_role("button", name="Score labels", exact=True).click()
    expect(page.locator("#zs-info")).to_contain_text("Weights used", timeout=60_000)
    expect(page.locator("#zs-label")).to_contain_text("%")
    expect(page.locator("#zs-plot")).to_contain_text("image alone")


def test_train_your_own_from_csv_and_media(tiny_app, page, tmp_path):
    csv_path = write_dataset(tmp_path, "scene_qa", n=40, seed=21)
    name = f"browser-{os.getpid()}"
    open_classify(page, tiny_app[1], "Train your own")
    page.locator("#train-files input[type=file]").set_input_files(
        [str(csv_path)] + [str(p) for p in sorted((tmp_path / "media").iterdir())])
    expect(page.locator("#train-files")).to_contain_text("data.csv", timeout=30_000)
    page.locator("#train-name textarea, #train-name input").first.fill(name)
    page.get_by_role("button", name="Train on my data", exact=True).click()
    status = page.locator("#train-status")
    expect(status).to_contain_text(f"Saved as {name}", timeout=90_000)
    expect(status).to_contain_text("40 examples")
    board = page.locator("#train-board")
    expect(board).to_contain_text("image only (baseline)")
    expect(board).to_contain_text("text only (baseline)")
    expect(page.locator("#train-chart")).to_contain_text("Validation accuracy")
    expect(page.locator("#train-confusion")).to_contain_text("Confusion matrix")
    expect(page.locator("#train-download").get_by_role("link")).to_have_attribute(
        "href", re.compile(rf".*/{name}\.safetensors$"))
    # The new head is picked for classification at once.
    page.get_by_role("tab", name="Classify with a head", exact=True).click()
    expect(page.locator("#classify-head input")).to_have_value(name)

    from mmdemo.settings import Settings

    (Path(Settings().cache_dir) / "heads" / f"{name}.safetensors").unlink(missing_ok=True)
