"""--gallery-index through gradio_client: with saved indexes in the settings, the Image and
Audio tabs' searches without uploads answer from them (memory-mapped), not from the examples.

The saved galleries are copies of the examples named "saved-...", so an answer from the
examples can't pass for one from the index; the image index is padded to 3,000 items with
random embeddings, enough for an approximate (HNSW) search, and one scene's file is
deleted after indexing, as happens when a saved index outlives its files.
"""

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.settings import Settings
from tests.helpers.outputs import layout_text, predict_with_warnings
from tests.helpers.saved_indexes import (PADDING, SAVED, other_model, saved_image_index, saved_sound_index, serve)

GONE = f"{SAVED}08-large-red-ring.png"  # indexed, then deleted


@pytest.fixture(scope="module")
def saved(tmp_path_factory, clip, audio):
    root = tmp_path_factory.mktemp("saved-app")
    img = saved_image_index(root / "images", clip, root / "gallery.npz", padding=2976, exact_limit=100)
    (root / "images" / GONE).unlink()
    snd = saved_sound_index(root / "sounds", audio, root / "sounds.npz")
    return {"root": root, "img": img, "snd": snd,
            "caption": json.loads((root / "images" / "captions.json").read_text())}


@pytest.fixture(scope="module")
def saved_app(saved, session_cache):
    demo = serve(Settings(device="cpu", max_upload_mb=5, cache_dir=session_cache,
                          gallery_indexes=(saved["img"], saved["snd"])))
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(saved_app):
    return Client(saved_app.local_url, verbose=False)


def _markdowns(demo) -> dict[str, str]:
    return {c["props"].get("elem_id"): c["props"].get("value") for c in demo.config["components"]
            if c.get("type") == "markdown" and c["props"].get("elem_id")}


def test_the_tabs_say_which_index_they_search(saved_app):
    shown = _markdowns(saved_app)
    image, audio = shown["image-saved-index"], shown["audio-saved-index"]
    assert image.startswith("Searching gallery.npz: 3,000 images · HNSW (M ") and "held-out queries" in image
    assert float(image.split("recall@10 ")[1].split()[0]) >= 0.9
    assert audio.startswith("Searching sounds.npz: ") and "sounds (" in audio and "windows) · exact search" in audio


def test_search_without_files_answers_from_the_saved_index(client, saved):
    thumbs, table, notes = client.predict("a red diamond", 8, None, api_name="/search_images")
    labels = [row[1] for row in table["data"]]
    assert len(labels) == 8 and all(lb.startswith((SAVED, PADDING)) for lb in labels)
    assert f"{SAVED}00-small-red-diamond.png" in labels[:3]
    assert len(thumbs) == 8 and all(Path(t["image"]).is_file() for t in thumbs)
    assert [t["caption"].split(" · ")[-1] for t in thumbs] == labels


def test_a_result_whose_file_is_gone_keeps_its_row_without_a_thumbnail(client, saved):
    (thumbs, table, notes), warnings = predict_with_warnings(client, saved["caption"][GONE], 24, None,
                                                             api_name="/search_images")
    labels = [row[1] for row in table["data"]]
    assert GONE in labels and len(labels) == 24
    assert len(thumbs) == 23 and not any(GONE in (t.get("caption") or "") for t in thumbs)
    told = [w for w in warnings if "no longer where the index found them" in w]
    assert len(told) == 1 and GONE in told[0] and "1 result(s)" in told[0] and told[0] in notes


def test_the_map_of_the_saved_index_is_a_seeded_sample(client):
    client.predict("a red diamond", 5, None, api_name="/search_images")
    title = layout_text(client.predict("a red diamond", 5, api_name="/embedding_map"))
    assert "(a seeded sample and the best matches)" in title and "of 3,000 images" in title


def test_uploaded_files_still_win(client, saved):
    files = [saved["root"] / "images" / f"{SAVED}00-small-red-diamond.png",
             saved["root"] / "images" / f"{SAVED}01-small-green-ring.png"]
    _, table, _ = client.predict("a red diamond", 5, [handle_file(str(f)) for f in files], api_name="/search_images")
    assert sorted(row[1] for row in table["data"]) == sorted(f.name for f in files)


def test_sound_search_without_files_answers_from_the_saved_index(client):
    rows, *players = client.predict("a rising chirp", 6, None, api_name="/search_audio")
    labels = [row[1] for row in rows["data"]]
    assert len(labels) == 6 == len(set(labels)) and all(lb.startswith(SAVED) for lb in labels)  # one per sound
    assert any("rising chirp" in row[3] for row in rows["data"][:2])
    assert all(p for p in players)  # three players, from the saved files
    start, end = (float(x) for x in rows["data"][0][4].removesuffix(" s").split("–"))
    assert 0 <= start < end


def test_an_index_from_another_model_is_refused_at_search_time(saved, session_cache, tmp_path):
    img = other_model(saved["img"], tmp_path / "img.npz")
    snd = other_model(saved["snd"], tmp_path / "snd.npz")
    demo = serve(Settings(device="cpu", cache_dir=session_cache, gallery_indexes=(img, snd)))
    try:
        client = Client(demo.local_url, verbose=False)
        with pytest.raises(AppError, match="index it again with the current model"):
            client.predict("a red diamond", 5, None, api_name="/search_images")
        with pytest.raises(AppError, match="index it again with the current model"):
            client.predict("a rising chirp", 5, None, api_name="/search_audio")
    finally:
        demo.close()
