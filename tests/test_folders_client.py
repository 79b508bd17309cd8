"""The Folders tab's API (/run_folder) through gradio_client on the shipped tiny bundle:
rows, downloads, captions.json, bad uploads refused in words with the server still serving."""

import csv
import json

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers.folders import corrupt_png, write_scenes, write_sounds, zip_bytes, zip_folder

API = "/run_folder"


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


@pytest.fixture(scope="module")
def scene_zip(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders-client")
    captions = write_scenes(root / "pics", n=6)
    corrupt_png(root / "pics" / "broken.png")
    return zip_folder(root / "pics", root / "pics.zip", prefix="pics/"), captions


def run(client, files, task="rank", texts="", template="", head="tiny-head-scene_qa-concat", text="",
        method="beam", max_length=20):
    return client.predict([handle_file(str(f)) for f in files], task, texts, template, head, text, method,
                          max_length, api_name=API)


def table_rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def test_rank_a_zip_gives_a_row_per_file_and_csv_json_downloads(client, scene_zip):
    z, captions = scene_zip
    table, downloads, status = run(client, [z])
    rows = table_rows(table)
    # Named by their path inside the zip.
    assert [r["file"] for r in rows] == [f"pics/{n}" for n in sorted(list(captions) + ["broken.png"])]
    (bad,) = [r for r in rows if r["error"]]
    assert bad["file"] == "pics/broken.png" and "broken.png" in bad["error"]
    good = [r for r in rows if not r["error"]]
    assert all(r["caption"] == captions[r["file"][5:]] for r in good)  # from the zip's captions.json
    assert sum(r["answer"] == r["caption"] for r in good) >= 4
    assert "**Done**: 7 file(s), 1 error(s)" in status and "own caption for" in status
    by_suffix = {p.rsplit(".", 1)[-1]: p for p in downloads}
    with open(by_suffix["csv"], newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == [r["file"] for r in rows]
    with open(by_suffix["json"]) as f:
        data = json.load(f)
    assert data["complete"] is True and data["done"] == 7 and data["errors"] == 1 and data["task"] == "rank"


def test_zero_shot_match_audio_and_classify(client, scene_zip, tmp_path):
    z, captions = scene_zip
    table, _, _ = run(client, [z], task="zero_shot", texts="red\ngreen\nblue\nyellow")
    answers = {r["file"][5:]: r["answer"] for r in table_rows(table) if not r["error"]}
    assert sum(a in captions[f] for f, a in answers.items()) >= 4
    table, _, _ = run(client, [z], task="classify", text="is there a red shape?")
    assert all(r["answer"] in ("yes", "no") or r["error"] for r in table_rows(table))
    write_sounds(tmp_path / "snd")
    table, _, status = run(client, [zip_folder(tmp_path / "snd", tmp_path / "snd.zip")], task="match_audio",
                           texts="a rising chirp\nwhite noise\na low tone")
    answers = {r["file"]: r["answer"] for r in table_rows(table)}
    assert answers["01-noise-white.wav"] == "white noise" and "3 file(s), 0 error(s)" in status


def test_files_uploaded_one_by_one_with_their_captions_json(client, tmp_path):
    captions = write_scenes(tmp_path, n=3)
    table, _, _ = run(client, [*(tmp_path / n for n in captions), tmp_path / "captions.json"])
    assert {r["file"]: r["caption"] for r in table_rows(table)} == captions


@pytest.mark.parametrize("make, args, message", [
    (lambda d: [], {}, "Upload a zip"),
    (lambda d: [_write(d / "notes.txt", b"hello")], {}, "No images found"),
    (lambda d: [_write(d / "empty.zip", zip_bytes({}))], {}, "No images found"),
    (lambda d: [_write(d / "text.zip", zip_bytes({"a.txt": b"x"}))], {}, "No images found"),
    (lambda d: [_write(d / "fake.zip", b"not a zip at all")], {}, "not a valid zip"),
    (lambda d: [_write(d / "many.zip", zip_bytes({f"{i}.png": b"x" for i in range(2001)}))], {}, "at most 2000"),
    (lambda d: [_scenes_zip(d)], {"task": "zero_shot", "texts": ""}, "at least one label"),
    (lambda d: [_scenes_zip(d)], {"task": "classify", "head": "no-such-head"}, "No head named 'no-such-head'"),
    (lambda d: [_scenes_zip(d)], {"task": "paint"}, "Unknown task"),
])
def test_bad_input_is_a_clear_message_and_the_server_keeps_serving(client, scene_zip, tmp_path, make, args, message):
    with pytest.raises(AppError, match=message) as err:
        run(client, make(tmp_path), **args)
    assert "Traceback" not in str(err.value)
    table, _, _ = run(client, [scene_zip[0]])
    assert len(table["data"]) == 7


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _scenes_zip(d):
    write_scenes(d / "s", n=2)
    return zip_folder(d / "s", d / "s.zip")


def test_image_search_over_a_users_zip_shows_its_captions(client, scene_zip, tmp_path):
    """Galleries read captions.json too: before, a zip's was dropped on extraction."""
    z, captions = scene_zip
    _, table, _ = client.predict("a large red circle", 3, [handle_file(str(z))], api_name="/search_images")
    rows = table["data"]
    assert rows and all(row[3] == captions[row[1]] for row in rows)
    # Uploaded loose beside the images, it counts as well.
    loose = write_scenes(tmp_path, n=2)
    files = [handle_file(str(tmp_path / n)) for n in [*loose, "captions.json"]]
    _, table, _ = client.predict("a large red circle", 2, files, api_name="/search_images")
    assert {row[1]: row[3] for row in table["data"]} == loose


def test_cancel_keeps_the_rows_streamed_so_far(client, scene_zip, tmp_path):
    import time

    write_scenes(tmp_path / "many", n=160, captions=False)
    z = zip_folder(tmp_path / "many", tmp_path / "many.zip")
    job = client.submit([handle_file(str(z))], "caption", "", "", "", "", "beam", 20, api_name=API)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(out[0]["data"] for out in job.outputs()):
        time.sleep(0.2)
    job.cancel()
    table, downloads, status = job.outputs()[-1]
    done = len(table["data"])
    assert 0 < done < 160 and f"Running**: {done} of 160" in status
    with open(next(p for p in downloads if p.endswith(".json"))) as f:
        data = json.load(f)
    assert data["done"] == done and data["complete"] is False and all(r["answer"] for r in data["rows"])
    assert len(run(client, [scene_zip[0]])[0]["data"]) == 7  # still serving
