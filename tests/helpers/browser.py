"""Browser-test steps several tabs' tests take (Playwright pages)."""

import os
from pathlib import Path


def open_image_tab(page, url, sub=None):
    page.set_viewport_size({"width": 1300, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Image", exact=True).click()
    if sub:
        page.get_by_role("tab", name=sub, exact=True).click()


def shot(page, name):
    """A full-page screenshot into $MMDEMO_SCREENSHOTS, when it is set."""
    folder = os.environ.get("MMDEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.wait_for_function("[...document.images].every(im => im.complete)")
        page.wait_for_timeout(500)  # plotly's transitions
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
