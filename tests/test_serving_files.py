"""Result files under many users at once, through gradio_client on the shipped tiny bundle.

Identical requests at the same moment get the same result files: every download is
complete, whatever else is being searched meanwhile, and a repeat writes nothing.
"""

import io
import tempfile
import threading
import time
import wave
from pathlib import Path

import httpx
from gradio_client import Client
from PIL import Image

STORM_SECONDS = 4.0
SEARCHERS, DOWNLOADERS = 3, 4


def _search_images(client) -> list[dict]:
    gallery, _table, _notes = client.predict("a red diamond", 8, None, api_name="/search_images")
    return [item["image"] for item in gallery]


def _ours(name: str, prefix: str) -> list[Path]:
    """The app's own copies of a result file (gradio serves a copy of it under the same name)."""
    return sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*/{name}"))


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_overlapping_identical_searches_serve_complete_thumbnails(tiny_app):
    url = tiny_app[1]
    first = _search_images(Client(url, verbose=False, download_files=False))
    urls = [f["url"] for f in first]
    assert len(urls) == 8
    stop = threading.Event()
    searched: list[list[str]] = []
    downloads: list[tuple[str, int, bytes]] = []
    errors: list[BaseException] = []

    def searcher():
        try:
            client = Client(url, verbose=False, download_files=False)
            while not stop.is_set():
                searched.append([f["url"] for f in _search_images(client)])
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    def downloader():
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                for u in urls:
                    try:
                        r = http.get(u)
                        downloads.append((u, r.status_code, r.content))
                    except httpx.HTTPError as exc:  # a body cut off mid-download: broken too
                        downloads.append((u, repr(exc), b""))

    threads = [threading.Thread(target=searcher) for _ in range(SEARCHERS)]
    threads += [threading.Thread(target=downloader) for _ in range(DOWNLOADERS)]
    for t in threads:
        t.start()
    time.sleep(STORM_SECONDS)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(searched) >= SEARCHERS and len(downloads) >= 5 * len(urls), (len(searched), len(downloads))
    # The same request gets the same files, every time, in the same order.
    assert all(s == urls for s in searched)
    served = {f["url"]: Path(f["path"]).read_bytes() for f in first}
    bad = [(u, status, len(body)) for u, status, body in downloads if status != 200 or body != served[u]]
    assert not bad, f"{len(bad)} of {len(downloads)} downloads broken, e.g. {bad[:3]}"
    for body in served.values():
        assert len(body) > 0
        with Image.open(io.BytesIO(body)) as im:
            im.load()
            assert max(im.size) <= 384


def test_a_repeat_search_rewrites_no_thumbnail(tiny_app):
    client = Client(tiny_app[1], verbose=False, download_files=False)
    files = _search_images(client)
    ours = [p for f in files for p in _ours(Path(f["path"]).name, "mmdemo-thumbnails-")]
    assert len(ours) >= len(files)  # every served thumbnail is a file the app wrote
    before = {p: _stat(p) for p in ours}
    served = {f["path"]: (Path(f["path"]).stat().st_ino, Path(f["path"]).read_bytes()) for f in files}
    again = _search_images(client)
    assert [f["path"] for f in again] == [f["path"] for f in files]
    assert {p: _stat(p) for p in ours} == before  # not rewritten, not even touched
    assert {p: (Path(p).stat().st_ino, Path(p).read_bytes()) for p in served} == served


def test_sound_players_and_the_example_clip_are_written_once(tiny_app):
    client = Client(tiny_app[1], verbose=False, download_files=False)

    def players() -> list[str]:
        """The files of the visible players (each output is an update: label, visible, value)."""
        _table, *shown = client.predict("a rising chirp", 5, None, api_name="/search_audio")
        return [p["value"]["path"] for p in shown if p.get("visible") and p.get("value")]

    paths = players()
    assert len(paths) == 3
    example = client.predict(api_name="/audio_example_clip")["path"]
    ours = [q for p in paths + [example] for q in _ours(Path(p).name, "mmdemo-players-")]
    assert len(ours) >= len(paths) + 1
    before = {p: _stat(p) for p in ours}
    assert players() == paths
    assert client.predict(api_name="/audio_example_clip")["path"] == example
    assert {p: _stat(p) for p in ours} == before
    for p in paths + [example]:
        with wave.open(p, "rb") as w:  # a complete, playable 16-bit WAV
            assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getnframes() > w.getframerate() // 10
