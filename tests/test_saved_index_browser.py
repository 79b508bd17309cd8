"""--gallery-index in a real browser (Debian's chromium via Playwright): the Image tab says
which saved index it searches (its size, kind and recorded recall), and a search shows
the index's images. Set MMDEMO_SCREENSHOTS=/some/folder to keep a screenshot."""

import re

import pytest
from playwright.sync_api import expect

from mmdemo.settings import Settings
from tests.helpers.browser import open_image_tab, shot
from tests.helpers.saved_indexes import SAVED, saved_image_index, serve


@pytest.fixture(scope="module")
def saved_app(tmp_path_factory, clip, session_cache):
    root = tmp_path_factory.mktemp("saved-browser")
    index = saved_image_index(root / "images", clip, root / "gallery.npz", padding=2976, exact_limit=100)
    demo = serve(Settings(device="cpu", cache_dir=session_cache, gallery_indexes=(index,)))
    yield demo
    demo.close()


def test_the_saved_index_is_named_and_searched(saved_app, page):
    open_image_tab(page, saved_app.local_url, "Search images by text")
    info = page.locator("#image-saved-index")
    expect(info).to_be_visible()
    expect(info).to_contain_text(re.compile(r"Searching gallery\.npz: 3,000 images · HNSW \(M \d+.*\) · "
                                            r"recall@10 (0\.9\d\d|1\.000) on \d+ held-out queries"))
    expect(page.locator("#image-gallery-files")).to_contain_text("the saved index gallery.npz")
    page.locator("#image-query input, #image-query textarea").first.fill("a red diamond")
    page.get_by_role("button", name="Search images", exact=True).click()
    results = page.locator("#image-results")
    expect(results.locator("img")).to_have_count(8, timeout=60_000)
    expect(results).to_contain_text(re.compile(rf"#1 · 0\.\d{{3}} · {SAVED}"))
    rows = page.locator("#image-results-table").get_by_role("row")
    expect(rows.filter(has_text=f"{SAVED}00-small-red-diamond.png")).to_have_count(1)
    plot = page.locator("#image-map")
    expect(plot).to_contain_text("(a seeded sample and the best matches)", timeout=60_000)
    shot(page, "saved-index")
