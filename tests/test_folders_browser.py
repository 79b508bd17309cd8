"""The Folders tab in a real browser (Debian's chromium via Playwright) on the tiny bundle:
upload a zip, run, see the rows and the downloads; Stop keeps the rows done so far."""

import csv
import io
import json
import re

from playwright.sync_api import expect

from tests.helpers.folders import corrupt_png, write_scenes, zip_folder


def open_folders(page, url, zip_path):
    page.goto(url)
    page.get_by_role("tab", name="Folders", exact=True).click()
    page.locator("#folders-files input[type=file]").set_input_files(str(zip_path))
    expect(page.locator("#folders-files")).to_contain_text(zip_path.stem, timeout=30_000)


def download(page, name: str) -> str:
    link = page.locator(f'#folders-downloads a[download="{name}"]')
    return page.request.get(link.get_attribute("href")).text()


def test_rank_a_zip_shows_rows_and_downloads(tiny_app, page, tmp_path):
    captions = write_scenes(tmp_path / "pics", n=6)
    corrupt_png(tmp_path / "pics" / "broken.png")
    open_folders(page, tiny_app[1], zip_folder(tmp_path / "pics", tmp_path / "shapes.zip"))
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.locator("#folders-status")
    expect(status).to_contain_text("Done: 7 file(s), 1 error(s)", timeout=60_000)
    rows = page.locator("#folders-table").get_by_role("row")
    expect(rows).to_have_count(8)  # the header and one row per file
    expect(page.locator("#folders-table [role=grid]")).to_have_attribute("aria-rowcount", "8")
    expect(rows.filter(has_text="broken.png")).to_contain_text("is not a readable image")
    first = sorted(captions)[0]
    expect(rows.filter(has_text=first)).to_contain_text(captions[first])  # the caption from captions.json
    for name in ("results.csv", "results.json"):  # download links
        expect(page.locator(f'#folders-downloads a[download="{name}"]')).to_have_count(1)
    table = list(csv.DictReader(io.StringIO(download(page, "results.csv"))))
    assert len(table) == 7 and {t["file"] for t in table} == set(captions) | {"broken.png"}
    assert json.loads(download(page, "results.json"))["complete"] is True


def test_stop_keeps_the_rows_done_so_far(tiny_app, page, tmp_path):
    write_scenes(tmp_path / "many", n=240, captions=False)
    open_folders(page, tiny_app[1], zip_folder(tmp_path / "many", tmp_path / "many.zip"))
    page.get_by_label("Caption (generate)").check()
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.locator("#folders-status")
    expect(status).to_contain_text(re.compile(r"Running: [1-9]\d* of 240"), timeout=90_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_contain_text("Stopped: ")
    page.wait_for_timeout(4_000)  # a batch that was under way must not land after Stop
    text = status.inner_text()
    done = int(re.search(r"Stopped: (\d+) of 240", text).group(1))
    assert 0 < done < 240, text
    page.wait_for_timeout(4_000)  # a run that went on would add a batch (~3 s) by now
    assert status.inner_text() == text
    # The table draws only the rows in view; its grid says how many it holds (with the header).
    expect(page.locator("#folders-table [role=grid]")).to_have_attribute("aria-rowcount", str(done + 1))
    table = list(csv.DictReader(io.StringIO(download(page, "results.csv"))))
    assert len(table) == done and all(t["answer"] for t in table)  # the download holds the same rows


def test_zero_shot_shows_its_own_inputs_and_answers_with_the_labels(tiny_app, page, tmp_path):
    captions = write_scenes(tmp_path / "pics", n=4)
    open_folders(page, tiny_app[1], zip_folder(tmp_path / "pics", tmp_path / "four.zip"))
    template = page.locator("#folders-template")
    expect(template).to_be_hidden()  # Rank captions reads no template
    page.get_by_label("Zero-shot classify").check()
    expect(template).to_be_visible()
    expect(page.locator("#folders-texts")).to_contain_text("Labels")
    page.locator("#folders-texts textarea").fill("red\ngreen\nblue\nyellow")
    template.locator("textarea, input").first.fill("a {} shape")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#folders-status")).to_contain_text("Done: 4 file(s), 0 error(s)", timeout=60_000)
    rows = page.locator("#folders-table").get_by_role("row")
    # The answer column (the caption column names the colour too, from captions.json).
    answers = {name: rows.filter(has_text=name).get_by_role("gridcell").nth(1).inner_text().strip()
               for name in captions}
    assert set(answers.values()) <= {"red", "green", "blue", "yellow"}
    assert sum(answers[name] in captions[name] for name in captions) >= 3, answers
