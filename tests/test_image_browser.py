"""The Image tab in a real browser (Debian's chromium via Playwright) on the tiny bundle.

Set MMDEMO_SCREENSHOTS=/some/folder to keep a full-page screenshot of each feature.
"""

import json
import re

import pytest
from playwright.sync_api import expect
from PIL import Image

from tests.helpers.browser import open_image_tab, shot


@pytest.fixture(scope="module")
def scenes():
    """The app's own example scenes, in the order the tab lists them: [(path, caption)]."""
    from mmdemo.settings import Settings
    from mmdemo.tasks.image import default_gallery_files

    folder = default_gallery_files(Settings().cache_dir)
    captions = json.loads((folder / "captions.json").read_text())
    return [(folder / name, captions[name]) for name in sorted(captions)]


def pick_example(page, examples_id, n, path):
    page.locator(f"#{examples_id} button.gallery-item").nth(n).click()
    # The picked scene shows in the image input (by its file name).
    expect(page.locator(f"#{examples_id.replace('examples', 'input')} img").first).to_have_attribute(
        "src", re.compile(re.escape(path.name)))


def test_caption_an_example_scene(tiny_app, page, scenes):
    path, caption = scenes[0]
    colour = caption.split()[2]  # "a small red diamond on ..." -> "red"
    open_image_tab(page, tiny_app[1])
    pick_example(page, "image-caption-examples", 0, path)
    page.get_by_role("button", name="Caption", exact=True).click()
    captions = page.locator("#image-captions textarea")
    expect(captions).to_have_value(re.compile(rf"\b{colour}\b"), timeout=60_000)
    shot(page, "caption")


def test_rank_captions_shows_the_ranked_chart(tiny_app, page, scenes):
    path, true = scenes[2]
    open_image_tab(page, tiny_app[1])
    pick_example(page, "image-caption-examples", 2, path)
    candidates = [true] + [c for _, c in scenes[5:8]]
    page.locator("#image-candidates textarea").fill("\n".join(candidates))
    page.get_by_role("button", name="Rank captions", exact=True).click()
    label = page.locator("#image-rank-label")
    expect(label).to_contain_text("%", timeout=60_000)
    expect(label.locator("h2, .output-class").first).to_have_text(true)  # the true caption on top
    plot = page.locator("#image-rank-plot")
    expect(plot.locator(".js-plotly-plot")).to_be_visible()
    expect(plot).to_contain_text("Ranked captions (4 candidates)")
    shot(page, "rank")


def test_search_images_by_text_shows_scored_results(tiny_app, page):
    open_image_tab(page, tiny_app[1], "Search images by text")
    page.locator("#image-query input, #image-query textarea").first.fill("a red diamond")
    page.get_by_role("button", name="Search images", exact=True).click()
    results = page.locator("#image-results")
    expect(results.locator("img")).to_have_count(8, timeout=60_000)
    expect(results).to_contain_text(re.compile(r"#1 · 0\.\d{3} · "))
    rows = page.locator("#image-results-table").get_by_role("row")
    expect(rows.nth(1)).to_contain_text("red")  # a red scene on top
    expect(page.locator("#image-map .js-plotly-plot")).to_be_visible()  # the map follows every search
    shot(page, "search-images")


def test_embedding_map_of_uploaded_images(tiny_app, page, tmp_path, scenes):
    from skimage import data

    files = []
    for name in ("astronaut", "chelsea", "coffee"):
        files.append(tmp_path / f"{name}.jpg")
        Image.fromarray(getattr(data, name)()).save(files[-1])
    files += [p for p, _ in scenes[:3]]
    open_image_tab(page, tiny_app[1], "Search images by text")
    page.locator("#image-gallery-files input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator("#image-gallery-files")).to_contain_text("coffee", timeout=30_000)  # name and suffix are shown apart
    page.locator("#image-query input, #image-query textarea").first.fill("a small red diamond")
    page.get_by_role("button", name="Search images", exact=True).click()
    plot = page.locator("#image-map")
    expect(plot.locator(".js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(plot).to_contain_text("Embedding map: 6 image(s)")
    expect(plot).to_contain_text("of variance")
    expect(plot.locator(".legendtext", has_text="query")).to_be_visible()
    expect(page.locator("#image-results-table").get_by_role("row").nth(1)).to_contain_text(scenes[0][0].name)
    shot(page, "embedding-map")


def test_search_texts_by_image_with_heatmap(tiny_app, page, scenes):
    path, true = scenes[1]
    open_image_tab(page, tiny_app[1], "Search texts by image")
    pick_example(page, "image-texts-examples", 1, path)
    page.locator("#image-heatmap-files input[type=file]").set_input_files([str(p) for p, _ in scenes[2:5]])
    expect(page.locator("#image-heatmap-files")).to_contain_text(scenes[4][0].stem, timeout=30_000)
    page.locator("#image-texts textarea").fill("\n".join(c for _, c in scenes[:6]))
    page.get_by_role("button", name="Search texts", exact=True).click()
    rows = page.locator("#image-texts-table").get_by_role("row")
    expect(rows).to_have_count(6, timeout=60_000)  # the header and the top 5 of 6 texts
    expect(rows.filter(has_text=true)).to_have_count(1)
    top3 = [rows.nth(i).inner_text() for i in (1, 2, 3)]
    assert any(true in row for row in top3), top3  # the scene's own caption near the top
    heat = page.locator("#image-heatmap")
    expect(heat.locator(".js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(heat).to_contain_text("4 image(s) x 6 text(s)")
    shot(page, "search-texts")
