"""The Images + sounds tab's API (/search_mixed) through gradio_client on the tiny bundle."""

import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.paths import REPO_DIR

IMAGES = REPO_DIR / "assets" / "examples" / "images"
SOUNDS = REPO_DIR / "assets" / "examples" / "sounds"


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


def _search(client, by="text", text="", image=None, sound=None, k=8, files=None):
    return client.predict(by, text, handle_file(str(image)) if image else None,
                          handle_file(str(sound)) if sound else None, k, files, api_name="/search_mixed")


def test_a_text_finds_images_and_sounds_in_one_ranking(client):
    shown, player, notes, table = _search(client, text="a red circle with a rising chirp", k=6)
    assert table["headers"] == ["rank", "kind", "name", "score", "cosine", "caption"]
    kinds = [row[1] for row in table["data"]]
    assert {"image", "sound"} <= set(kinds) and len(shown) == len(table["data"]) == 6
    scores = [row[3] for row in table["data"]]
    assert scores == sorted(scores, reverse=True)
    assert any("sound · 03-loud-rising-chirp.wav" in item["caption"] for item in shown)
    assert player and player.endswith(".wav")  # the best sound, playable
    assert "Ranked by cosine in one space" in notes


def test_an_image_and_a_sound_each_find_themselves_first(client):
    _, _, _, table = _search(client, by="image", image=IMAGES / "00-small-red-diamond.png", k=3)
    assert table["data"][0][1:3] == ["image", "00-small-red-diamond.png"]
    _, _, _, table = _search(client, by="sound", sound=SOUNDS / "03-loud-rising-chirp.wav", k=3)
    assert table["data"][0][1:3] == ["sound", "03-loud-rising-chirp.wav"]


def test_an_uploaded_zip_of_both_kinds_is_one_gallery(client, tmp_path):
    z = tmp_path / "mine.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(IMAGES / "00-small-red-diamond.png", "pics/red.png")
        zf.write(IMAGES / "05-small-orange-square.png", "square.png")
        zf.write(SOUNDS / "03-loud-rising-chirp.wav", "sounds/chirp.wav")
    _, player, notes, table = _search(client, text="a rising chirp", k=8, files=[handle_file(str(z))])
    assert sorted(row[2] for row in table["data"]) == ["chirp.wav", "red.png", "square.png"]
    assert table["data"][0][2] == "chirp.wav" and player
    assert "Skipped" not in notes  # each kind's builder skipping the other kind is not news


@pytest.mark.parametrize("kwargs, message", [
    ({"by": "image"}, "Upload, paste or pick an image"),
    ({"by": "sound"}, "Upload or record a sound"),
    ({"by": "text", "text": ""}, "Type what to search for"),
    ({"by": "smell", "text": "a"}, "Search by one of text, image, sound"),
])
def test_bad_queries_get_a_clear_message_and_the_server_keeps_serving(client, kwargs, message):
    with pytest.raises(AppError, match=message):
        _search(client, **kwargs)
    assert _search(client, text="a loud rising chirp", k=1)[3]["data"][0][2] == "03-loud-rising-chirp.wav"


def test_an_upload_with_nothing_readable_is_refused(client, tmp_path):
    bad = tmp_path / "notes.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "no media here")
    with pytest.raises(AppError) as err:
        _search(client, text="a red circle", files=[handle_file(str(bad))])
    assert "No images or sounds could be read" in str(err.value) and "Sounds: No sounds found" in str(err.value)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not a wave")
    with pytest.raises(AppError, match="None of the sounds could be read"):  # only sounds given: their own words
        _search(client, text="a red circle", files=[handle_file(str(broken))])


@pytest.mark.slow  # the real_app fixture builds and serves every real backend (random tiny weights)
def test_a_clip_beside_a_clap_is_bridged_through_text_and_says_so(real_app):
    client = Client(real_app[1], verbose=False)
    _, player, notes, table = client.predict("text", "a loud rising chirp", None, None, 40, None,
                                             api_name="/search_mixed")
    kinds = [row[1] for row in table["data"]]
    assert {"image", "sound"} <= set(kinds) and player
    assert "standardised per kind" in notes and "bridged through text" in notes
    _, _, notes, table = client.predict("image", "", handle_file(str(IMAGES / "00-small-red-diamond.png")), None,
                                        40, None, api_name="/search_mixed")
    # Itself first among the images (the CLIP's own space); the kinds interleave by z-score.
    assert next(row for row in table["data"] if row[1] == "image")[2] == "00-small-red-diamond.png"
    assert "sound" in [row[1] for row in table["data"]]  # sounds reached through the bridge texts
