"""mmdemo.media's errors and notices carry codes callers can branch on, and gallery
companions (captions.json) are not reported as stray files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from mmdemo.errors import MMDemoError
from mmdemo.media import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    collect_files,
    fmt_bytes,
    load_audio,
    load_image,
    parse_text_lines,
    read_captions,
    safe_extract_zip,
)


def _png_bytes(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _gallery(folder):
    folder.mkdir()
    (folder / "a.png").write_bytes(_png_bytes())
    (folder / "b.png").write_bytes(_png_bytes((0, 0, 255)))
    (folder / "captions.json").write_text(json.dumps({"a.png": "a red square"}))
    return folder


def _code(fn, *args, **kwargs) -> str:
    """The code of the MMDemoError ``fn(*args, **kwargs)`` raises."""
    with pytest.raises(MMDemoError) as err:
        fn(*args, **kwargs)
    return err.value.code


# --------------------------------------------------------------------------- companions


def test_companions_are_skipped_without_a_notice_in_folders(tmp_path):
    folder = _gallery(tmp_path / "g")
    files, notices = collect_files([folder], suffixes=IMAGE_SUFFIXES, max_files=10, companions=("captions.json",))
    assert [f.name for f in files] == ["a.png", "b.png"]
    assert notices == []

    # Without the parameter the same folder still warns about captions.json: the default is unchanged.
    _, notices = collect_files([folder], suffixes=IMAGE_SUFFIXES, max_files=10)
    (notice,) = notices
    assert notice.code == "files_skipped" and "'captions.json'" in notice


def test_companions_do_not_hide_other_junk(tmp_path):
    folder = _gallery(tmp_path / "g")
    (folder / "notes.txt").write_text("not an image")
    loose = tmp_path / "captions.json"
    loose.write_text("{}")
    files, notices = collect_files([folder, loose], suffixes=IMAGE_SUFFIXES, max_files=10,
                                   companions=("captions.json",))
    assert len(files) == 2
    (notice,) = notices
    assert notice.code == "files_skipped"
    assert "'notes.txt'" in notice and "captions.json" not in notice
    assert notice.startswith("Skipped 1 file(s) that are not images")


def test_companions_inside_a_zip(tmp_path):
    z = tmp_path / "gallery.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("g/a.png", _png_bytes())
        zf.writestr("g/captions.json", "{}")
        zf.writestr("g/readme.md", "hello")
    files, notices = collect_files([z], suffixes=IMAGE_SUFFIXES, max_files=10, extract_dir=tmp_path / "x",
                                   companions=("captions.json",))
    assert [f.name for f in files] == ["a.png"]
    (notice,) = notices
    assert notice.code == "files_skipped" and notice.subject == "gallery.zip"
    assert "readme.md" in notice and "captions.json" not in notice


# --------------------------------------------------------------------------- error codes


def test_empty_files_say_file_empty(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(MMDemoError, match=r"is empty \(0 bytes\)") as err:
        load_image(empty)
    assert err.value.code == "file_empty"
    assert _code(load_image, b"", name="pasted.png") == "file_empty"
    wav = tmp_path / "empty.wav"
    wav.write_bytes(b"")
    assert _code(load_audio, wav) == "file_empty"
    z = tmp_path / "empty.zip"
    z.write_bytes(b"")
    assert _code(safe_extract_zip, z, tmp_path / "out") == "file_empty"


def test_missing_and_unreadable_inputs(tmp_path):
    assert _code(load_image, tmp_path / "nope.png") == "file_not_found"
    assert _code(load_audio, tmp_path) == "file_is_folder"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not a png")
    assert _code(load_image, junk) == "image_unreadable"
    assert _code(load_audio, b"definitely not audio", name="junk.wav") == "audio_unreadable"
    assert _code(load_image, np.zeros((10, 10), np.uint8), max_pixels=50) == "image_too_many_pixels"
    assert _code(load_image, b"x" * 100, name="big.png", max_bytes=10) == "file_too_large"


def test_too_many_files_in_a_zip(tmp_path):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(4):
            zf.writestr(f"{i}.png", _png_bytes())
    with pytest.raises(MMDemoError, match="has too many files") as err:
        safe_extract_zip(z, tmp_path / "out", max_files=3)
    assert err.value.code == "zip_too_many_files"
    # collect_files turns the zip's limit into its own, by the code (the zip only had part of the budget).
    with pytest.raises(MMDemoError, match=r"Too many images: at most 3 are allowed") as err:
        collect_files([z], suffixes=IMAGE_SUFFIXES, max_files=3, extract_dir=tmp_path / "x")
    assert err.value.code == "too_many_files"


def test_unsafe_zip_and_nothing_found(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../escape.png", _png_bytes())
    assert _code(safe_extract_zip, z, tmp_path / "out") == "zip_unsafe"
    assert not (tmp_path / "escape.png").exists()
    (tmp_path / "only.txt").write_text("x")
    only_text = [tmp_path / "only.txt"]
    assert _code(collect_files, only_text, suffixes=AUDIO_SUFFIXES, max_files=3, what="audio files") == "no_files_found"


# --------------------------------------------------------------------------- notice codes


def test_notices_carry_codes_and_subjects():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buf.getvalue(), name="anim.gif")
    (notice,) = loaded.notices
    assert (notice.code, notice.subject) == ("image_animated", "anim.gif")

    clip = load_audio((16000, np.zeros(16000, np.float32)), name="quiet.wav", max_seconds=0.5)
    codes = {n.code: n.subject for n in clip.notices}
    assert codes == {"audio_silent": "quiet.wav", "audio_too_long": "quiet.wav"}

    items, notices = parse_text_lines("dog\ncat\ndog", what="labels")
    assert items == ["dog", "cat"]
    assert [n.code for n in notices] == ["text_duplicates_removed"]
    assert _code(parse_text_lines, "  \n ", what="labels") == "text_list_empty"


# --------------------------------------------------------------------------- helpers


def test_fmt_bytes_is_one_formatter_for_media_and_ui():
    assert [fmt_bytes(n) for n in (None, 0, 512, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "", "0 B", "512 B", "1.5 KB", "5.0 MB", "3072.0 GB"]
    from mmdemo.ui.common import fmt_bytes as ui_fmt_bytes

    assert ui_fmt_bytes is fmt_bytes


def test_read_captions_forms(tmp_path):
    assert read_captions(tmp_path) == {}
    (tmp_path / "captions.json").write_text(json.dumps(
        [{"file": "sub/a.png", "caption": "a red square"}, {"name": "b.png", "text": "a blue one"}, "junk"]))
    assert read_captions(tmp_path) == {"a.png": "a red square", "b.png": "a blue one"}
    (tmp_path / "captions.json").write_text("{not json")
    assert read_captions(tmp_path) == {}
