"""mmdemo.media against real odd files (scikit-image photos, scipy's WAV zoo) and crafted bad ones."""

from __future__ import annotations

import io
import os
import resource
import stat
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy
import skimage
import soundfile as sf
from PIL import Image, ImageFile
from scipy.io import wavfile
from skimage import data as skdata

from mmdemo.errors import MMDemoError
from mmdemo.media import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    collect_files,
    load_audio,
    load_image,
    parse_text_lines,
    safe_extract_zip,
)

SK_DATA = Path(skimage.__file__).parent / "data"
WAV_DATA = Path(scipy.__file__).parent / "io" / "tests" / "data"


def _png(arr_or_im, **kw) -> bytes:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def _wav(wave: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("fname", ["astronaut.png", "camera.png", "chelsea.png", "hubble_deep_field.jpg", "horse.png"])
def test_bundled_photos_load_as_rgb(fname):
    path = SK_DATA / fname
    with Image.open(path) as ref:
        size = ref.size
    out = load_image(path)
    assert out.image.mode == "RGB" and out.image.size == size
    assert out.name == fname and out.original_size == size
    assert out.notices == []


def test_gray_photo_keeps_its_pixels():
    cam = skdata.camera()
    out = load_image(SK_DATA / "camera.png")
    assert out.original_mode == "L"
    arr = np.asarray(out.image)
    assert np.array_equal(arr[..., 0], cam) and np.array_equal(arr[..., 2], cam)


def test_rgba_is_composited_on_white():
    out = load_image(SK_DATA / "horse.png")
    with Image.open(SK_DATA / "horse.png") as ref:
        rgba = np.asarray(ref).astype(float)
    a = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * a + 255.0 * (1 - a)
    assert out.original_mode == "RGBA"
    assert np.abs(np.asarray(out.image).astype(float) - expected).max() <= 1.5
    # fully transparent pixels become white, not black
    im = np.zeros((8, 8, 4), np.uint8)
    assert np.asarray(load_image(_png(im)).image).min() == 255


def test_animated_gif_uses_first_frame():
    out = load_image(SK_DATA / "no_time_for_that_tiny.gif")
    assert out.image.mode == "RGB" and out.image.size == (14, 25)
    assert any("animated; using the first frame" in n for n in out.notices)


def test_animated_webp_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = load_image(buf.getvalue(), name="anim.webp")
    assert any("animated" in n for n in out.notices)
    assert tuple(np.asarray(out.image)[8, 8]) == (255, 0, 0)


def test_multipage_tiff_uses_first_page():
    out = load_image(SK_DATA / "multipage.tif")
    assert out.image.size == (10, 15) and any("first frame" in n for n in out.notices)


def test_tiff_pillow_cannot_read_is_a_clear_error():
    # skimage ships a TIFF that Pillow cannot identify: a real-world unreadable upload.
    with pytest.raises(MMDemoError, match="multipage_rgb.tif.*not a readable image"):
        load_image(SK_DATA / "multipage_rgb.tif")


def test_16bit_png_is_scaled_not_white():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    data = _png(Image.fromarray(ramp))
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode.startswith("I")  # Pillow reads 16-bit PNG as I;16 (or I)
    out = load_image(data, name="depth.png")
    row = np.asarray(out.image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and abs(row[128] - 128) <= 2
    assert np.all(np.diff(row) >= 0)


def test_mode_i_and_float_images_are_scaled():
    im_i = Image.fromarray(np.array([[0, 30000, 65535]], np.int32))
    assert im_i.mode == "I"
    assert np.asarray(load_image(im_i).image)[0, :, 0].tolist() == [0, 117, 255]
    im_f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert im_f.mode == "F"
    assert np.asarray(load_image(im_f).image)[0, :, 0].tolist() == [0, 128, 255]
    wild = load_image(Image.fromarray(np.array([[-5.0, 0.0, 1000.0]], np.float32)))
    assert np.asarray(wild.image)[0, :, 0].tolist() == [0, 1, 255] and wild.notices


def test_cmyk_jpeg():
    cmyk = Image.fromarray(skdata.chelsea()).convert("CMYK")
    out = load_image(_png(cmyk, format="JPEG", quality=95), name="cmyk.jpg")
    assert out.original_mode == "CMYK" and out.image.mode == "RGB"
    diff = np.abs(np.asarray(out.image).astype(int) - skdata.chelsea().astype(int)).mean()
    assert diff < 12


def test_palette_and_1bit_and_la():
    base = Image.fromarray(skdata.astronaut())
    for im in (base.convert("P"), base.convert("1"), base.convert("LA")):
        out = load_image(im)
        assert out.image.mode == "RGB" and out.image.size == (512, 512)


def test_exif_orientation_6_swaps_width_and_height():
    im = Image.fromarray(skdata.chelsea())  # 451 x 300
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _png(im, format="JPEG", exif=exif)
    out = load_image(data)
    assert out.original_size == (451, 300)
    assert out.image.size == (300, 451)


@pytest.mark.parametrize(
    "arr",
    [
        skdata.camera(),
        skdata.astronaut(),
        skdata.astronaut()[..., :1],
        skdata.astronaut().astype(np.float32) / 255.0,
        skdata.camera().astype(np.float64),
        np.moveaxis(skdata.astronaut(), -1, 0),
        np.dstack([skdata.astronaut(), np.full((512, 512), 255, np.uint8)]),
    ],
    ids=["gray-u8", "rgb-u8", "hw1", "rgb-float01", "gray-float255", "chw", "rgba"],
)
def test_numpy_arrays(arr):
    out = load_image(arr)
    assert out.image.mode == "RGB" and out.image.size == (512, 512)
    assert 60 < np.asarray(out.image).mean() < 200


def test_bad_numpy_shapes():
    with pytest.raises(MMDemoError, match="shape"):
        load_image(np.zeros((5, 5, 7), np.uint8))
    with pytest.raises(MMDemoError, match="empty"):
        load_image(np.zeros((0, 4), np.uint8))


def test_zero_byte_file(tmp_path):
    p = tmp_path / "blank.png"
    p.write_bytes(b"")
    with pytest.raises(MMDemoError, match="'blank.png' is empty"):
        load_image(p)


def test_random_bytes_are_not_an_image():
    with pytest.raises(MMDemoError, match="not a readable image \\(PNG, JPEG"):
        load_image(np.random.default_rng(0).bytes(5000), name="noise.png")


def test_missing_file(tmp_path):
    with pytest.raises(MMDemoError, match="not found"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_raise_and_global_is_untouched(fmt):
    full = _png(skdata.astronaut(), format=fmt)
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(MMDemoError, match="not a readable image.*(truncated|incomplete)"):
        load_image(full[: len(full) // 2], name=f"half.{fmt.lower()}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before


def test_own_pixel_limit_holds_when_pillow_limit_is_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(MMDemoError, match="too large.*limit is 1 megapixels"):
        load_image(_patched_ihdr(3000, 3000), name="big.png", max_pixels=1_000_000)


def test_max_bytes():
    with pytest.raises(MMDemoError, match="too large"):
        load_image(_png(skdata.camera()), max_bytes=1000)


def _patched_ihdr(width: int, height: int) -> bytes:
    """A tiny real 1-bit PNG whose header claims width x height."""
    png = bytearray(_png(Image.new("1", (8, 8))))
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
    return bytes(png)


@pytest.mark.parametrize("dims,max_pixels", [((50_000, 50_000), 40_000_000), ((5000, 5000), 1_000_000)])
def test_decompression_bomb_rejected_fast_without_allocating(dims, max_pixels):
    data = _patched_ihdr(*dims)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(MMDemoError, match="too large"):
        load_image(data, name="bomb.png", max_pixels=max_pixels)
    assert time.perf_counter() - t0 < 1.0
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grew_kb < 50_000


def _quadrants(w: int, h: int) -> np.ndarray:
    """Red, green / blue, yellow quadrants: where each ends up shows orientation and aspect."""
    arr = np.empty((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2], arr[: h // 2, w // 2:] = (255, 0, 0), (0, 255, 0)
    arr[h // 2:, : w // 2], arr[h // 2:, w // 2:] = (0, 0, 255), (255, 255, 0)
    return arr


def _corner_colours(im: Image.Image) -> list[tuple[int, ...]]:
    a = np.asarray(im).astype(int)
    h, w = a.shape[:2]
    return [tuple(a[y, x]) for y, x in ((h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4),
                                        (3 * h // 4, 3 * w // 4))]


def _close(got, want, tol=12) -> bool:
    return all(abs(g - w) <= tol for gc, wc in zip(got, want) for g, w in zip(gc, wc))


QUADRANT_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


@pytest.fixture(scope="module")
def photo_38mp() -> bytes:
    """A 7100 x 5350 (38 MP) JPEG, the size of a full-frame camera's photo."""
    buf = io.BytesIO()
    Image.fromarray(_quadrants(7100, 5350)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_a_38mp_jpeg_is_decoded_small_with_its_aspect_and_content(photo_38mp):
    from mmdemo.media.image import MAX_DECODED_SIDE

    out = load_image(photo_38mp, name="big.jpg")
    assert out.original_size == (7100, 5350)  # what the file holds, as told to the user
    w, h = out.image.size
    assert max(w, h) == MAX_DECODED_SIDE and out.image.mode == "RGB"
    assert abs(w / h - 7100 / 5350) < 0.002
    assert _close(_corner_colours(out.image), QUADRANT_COLOURS)
    full = load_image(photo_38mp, max_side=None).image  # who asks gets every pixel
    assert full.size == (7100, 5350) and _close(_corner_colours(full), QUADRANT_COLOURS)


def test_large_rotated_jpeg_and_png_and_arrays_fit_the_same_way():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotated 90 degrees clockwise)
    rotated = load_image(_png(Image.fromarray(_quadrants(4000, 3000)), format="JPEG", exif=exif), max_side=1000)
    assert rotated.image.size == (750, 1000) and rotated.original_size == (4000, 3000)
    # The left column (red over blue) is now the top row, blue first: [blue, red / yellow, green].
    assert _close(_corner_colours(rotated.image), [(0, 0, 255), (255, 0, 0), (255, 255, 0), (0, 255, 0)])
    rgba = np.dstack([_quadrants(3000, 1000), np.full((1000, 3000), 255, np.uint8)])
    for source in (_png(rgba), _png(Image.fromarray(_quadrants(3000, 1000)).convert("P")), _quadrants(3000, 1000)):
        out = load_image(source, max_side=600)
        assert out.image.size == (600, 200) and _close(_corner_colours(out.image), QUADRANT_COLOURS)


def test_images_within_the_limit_keep_every_pixel():
    arr = skdata.astronaut()  # 512 x 512
    assert np.array_equal(np.asarray(load_image(_png(arr), max_side=512).image), arr)


# --------------------------------------------------------------------------- audio


def _scipy_mono(path: Path) -> tuple[int, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # scipy's own chatter on WAVEX extras
        sr, arr = wavfile.read(path)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        arr = (arr.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2) if info.min == 0 else arr / (info.max + 1.0)
    arr = arr.reshape(len(arr), -1)
    return sr, arr.mean(axis=1)


@pytest.mark.parametrize(
    "fname,channels",
    [
        ("test-8000Hz-le-2ch-1byteu.wav", 2),
        ("test-8000Hz-be-3ch-5S-24bit.wav", 3),
        ("test-8000Hz-le-3ch-5S-24bit-rf64.wav", 3),
        ("test-44100Hz-be-1ch-4bytes.wav", 1),
        ("test-44100Hz-le-1ch-4bytes-rf64.wav", 1),
        ("test-44100Hz-2ch-32bit-float-be.wav", 2),
        ("test-48000Hz-2ch-64bit-float-le-wavex.wav", 2),
        ("test-8000Hz-le-4ch-9S-12bit.wav", 4),
        ("test-8000Hz-le-5ch-9S-5bit.wav", 5),
    ],
)
def test_scipy_wav_zoo_matches_scipy(fname, channels):
    path = WAV_DATA / fname
    clip = load_audio(path, target_sr=None)
    sr, ref = _scipy_mono(path)
    assert clip.channels == channels and clip.sample_rate == sr == clip.original_sample_rate
    assert clip.wave.dtype == np.float32 and clip.wave.ndim == 1
    assert clip.wave.shape == ref.shape
    assert np.allclose(clip.wave, ref, atol=1e-3)
    assert clip.duration == pytest.approx(len(ref) / sr)


def test_scipy_wav_resampled_to_16k():
    clip = load_audio(WAV_DATA / "test-44100Hz-le-1ch-4bytes.wav")
    assert clip.sample_rate == 16000 and clip.original_sample_rate == 44100
    assert clip.duration == pytest.approx(0.1, abs=1e-3)


def test_ulaw_and_early_eof_wavs_load():
    assert load_audio(WAV_DATA / "test-8000Hz-le-1ch-1byte-ulaw.wav", target_sr=None).wave.size == 9
    assert load_audio(WAV_DATA / "test-44100Hz-le-1ch-4bytes-early-eof.wav").wave.size > 0


@pytest.mark.parametrize(
    "fname",
    [
        "test-44100Hz-le-1ch-4bytes-incomplete-chunk.wav",
        "test-44100Hz-le-1ch-4bytes-early-eof-no-data.wav",
        "test-8000Hz-le-3ch-5S-36bit.wav",
    ],
)
def test_broken_scipy_wavs_are_clear_errors(fname):
    with pytest.raises(MMDemoError, match=f"{fname}.*not a readable audio file \\(WAV, FLAC, OGG, MP3"):
        load_audio(WAV_DATA / fname)


def test_sample_rate_out_of_range():
    with pytest.raises(MMDemoError, match="1234 Hz.*8 kHz to 192 kHz"):
        load_audio(WAV_DATA / "test-1234Hz-le-1ch-10S-20bit-extra.wav")
    with pytest.raises(MMDemoError, match="sample rate"):
        load_audio((400_000, np.zeros(100, np.float32)))


def test_zero_byte_random_and_truncated_header(tmp_path):
    empty = tmp_path / "rec.wav"
    empty.write_bytes(b"")
    with pytest.raises(MMDemoError, match="'rec.wav' is empty"):
        load_audio(empty)
    with pytest.raises(MMDemoError, match="not a readable audio file"):
        load_audio(np.random.default_rng(1).bytes(4000), name="noise.mp3")
    header = (WAV_DATA / "test-44100Hz-le-1ch-4bytes.wav").read_bytes()[:30]
    with pytest.raises(MMDemoError, match="not a readable audio file"):
        load_audio(header, name="cut.wav")


@pytest.mark.parametrize("sr", [8000, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_rates_and_channels(sr, channels):
    t = np.arange(sr // 2) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    multi = np.stack([tone] * channels, axis=1)
    clip = load_audio(_wav(multi, sr), name="tone.wav")
    assert clip.channels == channels and clip.original_sample_rate == sr
    assert clip.sample_rate == 16000 and clip.duration == pytest.approx(0.5, abs=1e-3)
    assert not (clip.silent or clip.clipped or clip.truncated) and clip.notices == []
    assert 0.45 < np.abs(clip.wave).max() < 0.55


def test_flac_ogg_mp3():
    tone = 0.3 * np.sin(np.linspace(0, 200, 16000))
    assert load_audio(_wav(tone, 16000, "MPEG_LAYER_III", "MP3"), name="x.mp3").duration == pytest.approx(1.0, abs=0.05)
    assert load_audio(_wav(tone, 16000, "PCM_16", "FLAC")).duration == pytest.approx(1.0)
    assert load_audio(_wav(tone, 16000, "VORBIS", "OGG")).duration == pytest.approx(1.0, abs=0.01)


def test_gradio_tuple_int16_and_channels_first():
    pcm = (np.sin(np.linspace(0, 100, 8000)) * 16000).astype(np.int16)
    clip = load_audio((8000, np.stack([pcm, pcm], 1)), target_sr=None)
    assert clip.channels == 2 and np.allclose(clip.wave, pcm / 32768.0, atol=1e-6)
    clip = load_audio((8000, np.stack([pcm, pcm], 0)), target_sr=None)
    assert clip.channels == 2 and clip.wave.size == 8000
    u8 = load_audio((8000, np.full(800, 128, np.uint8)), target_sr=None)
    assert u8.silent and np.abs(u8.wave).max() == 0


def test_nan_samples_replaced():
    x = (0.1 * np.sin(np.arange(16000))).astype(np.float32)
    x[100:110] = np.nan
    x[200] = np.inf
    clip = load_audio((16000, x))
    assert np.isfinite(clip.wave).all() and any("NaN" in n for n in clip.notices)


def test_silent_and_clipped():
    silent = load_audio(_wav(np.zeros(16000), 16000))
    assert silent.silent and any("silent" in n for n in silent.notices)
    loud = np.clip(3 * np.sin(np.linspace(0, 300, 16000)), -1, 1)
    clip = load_audio(_wav(loud, 16000, "FLOAT"))
    assert clip.clipped and not clip.silent and any("clipped" in n for n in clip.notices)


def test_over_long_is_truncated():
    x = 0.2 * np.sin(np.linspace(0, 1000, 48000 * 3))
    clip = load_audio(_wav(x, 48000), max_seconds=1.0)
    assert clip.truncated and clip.duration == pytest.approx(1.0)
    assert any("only the first 1 s" in n for n in clip.notices)
    exact = load_audio(_wav(x[:48000], 48000), max_seconds=1.0)
    assert not exact.truncated


def test_no_samples():
    with pytest.raises(MMDemoError, match="contains no samples"):
        load_audio(_wav(np.zeros((0, 1)), 16000), name="nothing.wav")
    with pytest.raises(MMDemoError, match="contains no samples"):
        load_audio((16000, np.zeros(0, np.int16)))


# --------------------------------------------------------------------------- text lines


def test_text_lines_basic():
    items, notices = parse_text_lines("  cat \r\n\n dog\ncat\n\t\nbird  ")
    assert items == ["cat", "dog", "bird"]
    assert any("duplicate" in n for n in notices)
    assert parse_text_lines(["a", " b ", "", "c\nd"]) == (["a", "b", "c", "d"], [])


@pytest.mark.parametrize("empty", [None, "", "  \n\n \t", [], ["", "  "]])
def test_text_lines_empty(empty):
    with pytest.raises(MMDemoError, match="Enter at least one label"):
        parse_text_lines(empty)
    with pytest.raises(MMDemoError, match="Enter at least one prompt "):
        parse_text_lines(empty, what="prompts")
    with pytest.raises(MMDemoError, match="Enter at least one class "):
        parse_text_lines(empty, what="classes")


def test_text_lines_limits():
    with pytest.raises(MMDemoError, match="at most 3"):
        parse_text_lines("a\nb\nc\nd", max_items=3)
    items, notices = parse_text_lines("x" * 500 + "\nshort", max_chars=300)
    assert len(items[0]) == 300 and any("shortened" in n for n in notices)


def test_text_lines_bytes():
    items, notices = parse_text_lines(b"caf\xe9\nna\xc3\xafve")
    assert items == ["caf\ufffd", "na\u00efve"] and any("UTF-8" in n for n in notices)
    assert parse_text_lines("\ufeffhello".encode()) == (["hello"], [])


# --------------------------------------------------------------------------- zips


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def test_zip_extracts_sorted_and_skips_junk(tmp_path):
    png = _png(skdata.camera()[:16, :16])
    z = _zip(
        tmp_path / "set.zip",
        {
            "b/two.png": png,
            "a.png": png,
            "sub/": b"",
            "__MACOSX/._a.png": b"junk",
            ".hidden.png": png,
            "b/.DS_Store": b"junk",
            "readme.txt": b"hi",
        },
    )
    paths, notices = safe_extract_zip(z, tmp_path / "out", allowed_suffixes={".png"})
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == ["a.png", "b/two.png"]
    assert any("readme.txt" in n for n in notices)
    assert load_image(paths[1]).image.size == (16, 16)
    all_paths, _ = safe_extract_zip(z, tmp_path / "out2")
    assert len(all_paths) == 3


@pytest.mark.parametrize("evil", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png", "..\\evil.png"])
def test_zip_traversal_and_absolute_rejected(tmp_path, evil):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.png", b"x")
        zf.writestr(zipfile.ZipInfo(evil), b"x")  # ZipInfo keeps the raw name
    with pytest.raises(MMDemoError, match="unsafe path"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


def test_zip_symlink_rejected(tmp_path):
    z = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(MMDemoError, match="symbolic link.*link.png"):
        safe_extract_zip(z, tmp_path / "out")


def test_zip_too_many_files(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(12)})
    with pytest.raises(MMDemoError, match="at most 10"):
        safe_extract_zip(z, tmp_path / "out", max_files=10)


def test_zip_bomb_declared_size(tmp_path):
    z = _zip(tmp_path / "bomb.zip", {"zeros.png": bytes(20 * 1024 * 1024)})
    assert z.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(MMDemoError, match="too large"):
        safe_extract_zip(z, tmp_path / "out", max_total_bytes=1024 * 1024)
    assert time.perf_counter() - t0 < 1.0
    assert not (tmp_path / "out" / "zeros.png").exists()


def test_zip_lying_header_cannot_exceed_limit(tmp_path):
    z = _zip(tmp_path / "liar.zip", {"a.png": bytes(3 * 1024 * 1024)})
    raw = bytearray(z.read_bytes())
    # Claim 100 bytes in both the local and the central header.
    local = raw.index(b"PK\x03\x04")
    raw[local + 22 : local + 26] = struct.pack("<I", 100)
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 100)
    z.write_bytes(bytes(raw))
    with pytest.raises(MMDemoError, match="too large|corrupt"):
        safe_extract_zip(z, tmp_path / "out", max_total_bytes=1024 * 1024)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_not_a_zip_and_corrupt_zip(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(MMDemoError, match="'junk.zip' is not a valid zip"):
        safe_extract_zip(junk, tmp_path / "out")
    good = _zip(tmp_path / "good.zip", {"a.png": os.urandom(5000)}, zipfile.ZIP_STORED).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(MMDemoError, match="not a valid zip"):
        safe_extract_zip(cut, tmp_path / "out")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(MMDemoError, match="empty"):
        safe_extract_zip(empty, tmp_path / "out")


def test_zip_corrupt_member_data(tmp_path):
    z = _zip(tmp_path / "crc.zip", {"a.png": b"hello world" * 100}, zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    raw[40] ^= 0xFF  # flip a payload byte: CRC check fails while streaming
    z.write_bytes(bytes(raw))
    with pytest.raises(MMDemoError, match="corrupt"):
        safe_extract_zip(z, tmp_path / "out")


# --------------------------------------------------------------------------- collect_files


def test_collect_files_dirs_zips_and_files(tmp_path):
    png = _png(skdata.camera()[:8, :8])
    d = tmp_path / "photos"
    (d / "z_sub").mkdir(parents=True)
    (d / ".git").mkdir()
    for rel in ("b.PNG", "a.jpg", "z_sub/c.png", ".git/x.png", ".hidden.png", "notes.txt"):
        (d / rel).write_bytes(png)
    z = _zip(tmp_path / "more.zip", {"x.png": png, "y.gif": png, "doc.pdf": b"%PDF"})
    single = tmp_path / "single.webp"
    single.write_bytes(png)

    files, notices = collect_files(
        [d, str(z), {"path": str(single)}, d / "a.jpg"],
        suffixes=IMAGE_SUFFIXES, max_files=20, extract_dir=tmp_path / "x",
    )
    names = [f.name for f in files]
    assert names == ["a.jpg", "b.PNG", "c.png", "x.png", "y.gif", "single.webp"]
    assert any("notes.txt" in n for n in notices) and any("doc.pdf" in n for n in notices)


def test_collect_files_limits_and_empty(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.wav").write_bytes(b"x")
    with pytest.raises(MMDemoError, match="at most 5"):
        collect_files([d], suffixes=AUDIO_SUFFIXES, max_files=5, what="audio files")
    z = _zip(tmp_path / "a.zip", {f"{i}.wav": b"x" for i in range(6)})
    with pytest.raises(MMDemoError, match="at most 5 are allowed"):
        collect_files([z], suffixes=AUDIO_SUFFIXES, max_files=5, what="audio files", extract_dir=tmp_path / "x")
    with pytest.raises(MMDemoError, match="No images found"):
        collect_files([d], suffixes=IMAGE_SUFFIXES, max_files=5)
    with pytest.raises(MMDemoError, match="not found"):
        collect_files([tmp_path / "missing"], suffixes=IMAGE_SUFFIXES, max_files=5)
