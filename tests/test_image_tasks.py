"""Image task functions and CLI on the shipped tiny bundle: what a user of the Image tab would see.

The bundle is small and imperfect (colour is reliable, shape less so), so quality
checks count successes over the example gallery instead of trusting one example.
"""

import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.errors import MMDemoError
from mmdemo.paths import EXAMPLES_DIR
from mmdemo.tasks import image as I
from mmdemo.toyworld import scenes as S

GALLERY = EXAMPLES_DIR / "images"
CAPTIONS = json.loads((GALLERY / "captions.json").read_text())
# Examples with one object: {file: (size, colour, shape)}
SINGLES = {f: S.parse_caption(c)[0] for f, c in CAPTIONS.items() if len(S.parse_caption(c)) == 1}


def scene(colour, shape, size="large", seed=0, px=64):
    sc = S.sample_scene_with(np.random.default_rng(seed), [(size, colour, shape)], 1, "any")
    return S.render_scene(sc, size=px)


def encode(im: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def huge_header_png(width, height) -> bytes:
    """A tiny real PNG whose header claims width x height (a decompression bomb's calling card)."""
    png = bytearray(encode(Image.new("1", (8, 8))))
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
    return bytes(png)


def animated_gif(first, second) -> bytes:
    frames = [Image.fromarray(first), Image.fromarray(second)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated(upright: Image.Image, fmt="JPEG") -> bytes:
    """Stored turned on its side, with EXIF orientation 6 saying how to turn it back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    extra = {"quality": 95} if fmt == "JPEG" else {}
    return encode(upright.transpose(Image.Transpose.ROTATE_90), fmt, exif=exif, **extra)


def odd_images(tmp: Path) -> dict[str, Path]:
    """Readable but unusual files, each of a red object (the first GIF frame is red)."""
    red = scene("red", "circle", seed=1)
    rgba = np.dstack([red, np.where((red == red[0, 0]).all(axis=2), 0, 255).astype(np.uint8)])
    gray16 = (np.asarray(Image.fromarray(red).convert("L"), np.uint16) * 257)
    return {
        "animated": write(tmp / "anim.gif", animated_gif(red, scene("blue", "square", seed=2))),
        "16-bit": write(tmp / "gray16.png", encode(Image.fromarray(gray16))),
        "grayscale": write(tmp / "gray.png", encode(Image.fromarray(red).convert("L"))),
        "cmyk": write(tmp / "cmyk.jpg", encode(Image.fromarray(red).convert("CMYK"), "JPEG", quality=95)),
        "rgba": write(tmp / "rgba.png", encode(Image.fromarray(rgba, "RGBA"))),
        "exif": write(tmp / "exif.jpg", exif_rotated(Image.fromarray(red))),
    }


def bad_images(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Unreadable files and the words their error must contain."""
    good = encode(Image.fromarray(scene("red", "circle")))
    return {
        "corrupt": (write(tmp / "corrupt.png", good[:40] + bytes(range(256)) * 4), "not a readable image"),
        "truncated": (write(tmp / "truncated.png", good[: len(good) // 2]), "truncated"),
        "zero-byte": (write(tmp / "empty.png", b""), "empty (0 bytes)"),
        "not an image": (write(tmp / "notes.png", b"shopping list: eggs, milk\n" * 20), "not a readable image"),
        "over the pixel limit": (write(tmp / "bomb.png", huge_header_png(9000, 9000)), "too large"),
    }


@pytest.fixture(scope="module")
def gallery(clip):
    return I.build_gallery([GALLERY], clip)


# --------------------------------------------------------------------------- captioning


def test_captions_of_examples_name_their_colour_and_shape(captioner):
    named_colour = named_both = 0
    for fname, (_, colour, shape) in SINGLES.items():
        res = I.caption_image(GALLERY / fname, captioner)
        assert len(res.captions) == 1 and res.notices == []
        text = res.captions[0]
        assert set(S.tokenize(text)) <= set(S.WORDS), text  # the model's closed vocabulary, no junk tokens
        named_colour += colour in text
        named_both += colour in text and shape in text
    assert named_colour >= 0.75 * len(SINGLES)
    assert named_both >= 0.4 * len(SINGLES)


def test_caption_controls(captioner):
    img = GALLERY / next(iter(SINGLES))
    beams = I.caption_image(img, captioner, method="beam", num_beams=4, num_captions=3)
    assert 1 <= len(beams.captions) <= 3 and len(set(beams.captions)) == len(beams.captions)
    short = I.caption_image(img, captioner, method="greedy", max_length=3)
    assert len(S.tokenize(short.captions[0])) <= 3
    assert [n.code for n in short.notices] == ["caption_cut"] and "max length (3)" in short.notices[0]
    assert "caption_cut" not in [n.code for n in I.caption_image(img, captioner, method="greedy").notices]
    a = I.caption_image(img, captioner, method="top_p", temperature=1.5, seed=7, num_captions=2)
    b = I.caption_image(img, captioner, method="top_p", temperature=1.5, seed=7, num_captions=2)
    assert a.captions == b.captions  # same seed, same captions
    floats = I.caption_image(img, captioner, num_beams=3.0, max_length=20.0, num_captions=1.0)  # slider values
    assert floats.captions
    cold = I.caption_image(img, captioner, method="top_k", temperature=0.05, num_captions=4)
    assert len(cold.captions) == 1 and any("Merged 3 duplicate caption(s)" in n for n in cold.notices)


@pytest.mark.parametrize("kwargs,words", [
    ({"method": "greedy", "num_captions": 2}, "number of captions"),
    ({"num_beams": 2, "num_captions": 3}, "number of beams"),
    ({"method": "nucleus"}, "method must be one of"),
    ({"temperature": 0}, "temperature"),
    ({"max_length": 0}, "max length"),
])
def test_bad_caption_options_are_clear_errors(captioner, kwargs, words):
    with pytest.raises(MMDemoError, match=words):
        I.caption_image(GALLERY / next(iter(SINGLES)), captioner, **kwargs)


def test_caption_without_an_image(captioner):
    for empty in (None, "", "  "):
        with pytest.raises(MMDemoError, match="Upload, paste or pick an image"):
            I.caption_image(empty, captioner)


# --------------------------------------------------------------------------- rank captions


def test_rank_captions_puts_the_right_caption_first(clip):
    candidates = [f"a {c} {s}" for _, c, s in SINGLES.values()]
    right = 0
    for fname, (_, colour, shape) in SINGLES.items():
        res = I.rank_captions(GALLERY / fname, "\n".join(candidates), clip)
        scores = [r["score"] for r in res.ranked]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4
        assert {r["label"] for r in res.ranked} == set(candidates)
        assert all(-1 <= r["similarity"] <= 1 for r in res.ranked)
        right += res.ranked[0]["label"] == f"a {colour} {shape}"
    assert right >= 0.6 * len(SINGLES)


def test_blank_candidates_use_the_caption_bank(clip):
    bank = I.caption_bank(clip)
    assert len(bank) == len(set(bank)) >= 100
    colour_first = pair_top5 = 0
    for fname, (_, colour, shape) in SINGLES.items():
        res = I.rank_captions(GALLERY / fname, "" if colour_first % 2 else None, clip)
        assert len(res.ranked) == len(bank)
        colour_first += colour in res.ranked[0]["label"]
        pair_top5 += any(f"{colour} {shape}" in r["label"] for r in res.ranked[:5])
    assert colour_first >= 0.7 * len(SINGLES)
    assert pair_top5 >= 0.5 * len(SINGLES)


def test_caption_bank_for_a_model_that_is_not_the_toy_world():
    class Generic:  # a real model's BPE tokenizer has no closed word list
        tokenizer = object()

    bank = I.caption_bank(Generic())
    assert "a photo of a dog" in bank and not any("background" in c for c in bank)
    assert I.caption_bank(None) and all("background" in c for c in I.caption_bank(None))


def test_rank_captions_limits_and_long_captions(clip):
    img = GALLERY / next(iter(SINGLES))
    with pytest.raises(MMDemoError, match=f"Too many captions.*at most {I.MAX_CANDIDATES}"):
        I.rank_captions(img, [f"caption {i}" for i in range(I.MAX_CANDIDATES + 1)], clip)
    long = "a red circle " + "and a blue square " * 10
    res = I.rank_captions(img, ["a green ring", long], clip)
    assert len(res.ranked) == 2
    notice = " ".join(res.notices)
    assert "over the model's context length" in notice and "truncated" in notice and "1 of the captions" in notice
    res = I.rank_captions(img, "a red circle\na red circle\na blue star", clip)
    assert [r["label"] for r in res.ranked].count("a red circle") == 1 and "duplicate" in " ".join(res.notices)


# --------------------------------------------------------------------------- odd and bad images


def test_odd_but_readable_images_work_and_stay_red(clip, tmp_path):
    colours = [f"a {c} circle" for c in ("red", "blue", "green", "yellow")]
    scores = {}
    for kind, path in odd_images(tmp_path).items():
        res = I.rank_captions(path, colours, clip)
        scores[kind] = [r["score"] for r in res.ranked]
        if kind == "animated":
            assert any("first frame" in n for n in res.notices), res.notices
            assert res.ranked[0]["label"] == "a red circle"  # the first frame is red, the second blue
        elif kind in ("cmyk", "rgba", "exif"):
            assert res.ranked[0]["label"] == "a red circle", kind
    # The 16-bit file holds the grayscale picture at 257x: scaled, not clipped to a white sheet.
    np.testing.assert_allclose(scores["16-bit"], scores["grayscale"], atol=1e-5)


def test_exif_rotation_is_undone_before_encoding(clip, tmp_path):
    # A wide picture (red circle left, blue square right): upright, turned, and turned back by EXIF.
    wide = Image.fromarray(np.concatenate([scene("red", "circle"), scene("blue", "square", seed=3)], axis=1))
    texts = ["a red circle", "a blue square", "a green ring", "a white star"]
    upright = write(tmp_path / "upright.png", encode(wide))
    turned = write(tmp_path / "turned.png", encode(wide.transpose(Image.Transpose.ROTATE_90)))
    fixed = write(tmp_path / "exif.png", exif_rotated(wide, "PNG"))  # lossless: same pixels once turned back
    h = I.similarity_heatmap([upright, turned, fixed], texts, clip)
    assert h.images == ["upright.png", "turned.png", "exif.png"]
    assert np.abs(h.similarity[2] - h.similarity[0]).max() < 1e-5  # EXIF honoured: the upright picture
    assert np.abs(h.similarity[1] - h.similarity[0]).max() > 1e-3  # ignoring it would show


def test_unreadable_images_are_clear_errors_everywhere(clip, captioner, tmp_path):
    for kind, (path, words) in bad_images(tmp_path).items():
        for call in (lambda p: I.caption_image(p, captioner), lambda p: I.rank_captions(p, None, clip),
                     lambda p: I.search_texts(p, "a red circle", clip)):
            with pytest.raises(MMDemoError, match=re.escape(words)) as exc:
                call(path)
            assert path.name in str(exc.value), kind


def test_gallery_skips_unreadable_files_with_one_notice(clip, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    odd = odd_images(folder)
    bad_images(folder)  # five files that are not readable images
    write(folder / "readme.txt", b"not part of the gallery")
    g = I.build_gallery([folder], clip)
    assert sorted(i["name"] for i in g.index.items) == sorted(p.name for p in odd.values())
    skipped = [n for n in g.notices if n.startswith("Skipped 5 unreadable image(s)")]
    assert len(skipped) == 1 and skipped[0].code == "files_unreadable"
    assert any("readme.txt" in n for n in g.notices)
    assert any("anim.gif" in n and "first frame" in n for n in g.notices)
    hits = I.search_images(g, "a red circle", clip, k=len(g)).hits
    assert len(hits) == len(odd)


def test_gallery_with_nothing_readable_is_an_error(clip, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    bad_images(folder)
    with pytest.raises(MMDemoError, match="None of the images could be read"):
        I.build_gallery([folder], clip)
    with pytest.raises(MMDemoError, match="No images found"):
        I.build_gallery([write(tmp_path / "notes.txt", b"hello")], clip)
    with pytest.raises(MMDemoError, match="Upload some images"):
        I.build_gallery([], clip)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _declare_size(zip_path: Path, size: int) -> Path:
    """Patch the central directory so a member claims ``size`` bytes once extracted."""
    data = bytearray(zip_path.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 24:at + 28] = struct.pack("<I", size)
    zip_path.write_bytes(bytes(data))
    return zip_path


def test_gallery_from_a_zip_and_bad_zips(clip, tmp_path):
    red, blue = encode(Image.fromarray(scene("red", "circle"))), encode(Image.fromarray(scene("blue", "square")))
    z = _zip(tmp_path / "set.zip", {"shapes/red.png": red, "shapes/blue.png": blue, "__MACOSX/._red.png": b"x"})
    g = I.build_gallery([z], clip, extract_dir=tmp_path / "x")
    assert sorted(i["name"] for i in g.index.items) == ["blue.png", "red.png"]
    assert I.search_images(g, "a red circle", clip, k=1).hits[0]["label"] == "red.png"

    evil = _zip(tmp_path / "evil.zip", {"../../escape.png": red, "ok.png": blue})
    with pytest.raises(MMDemoError, match="unsafe path"):
        I.build_gallery([evil], clip, extract_dir=tmp_path / "y")
    assert not (tmp_path / "escape.png").exists() and not list((tmp_path / "y").rglob("*.png"))

    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(I.MAX_GALLERY_FILES + 1)})
    with pytest.raises(MMDemoError, match=f"Too many images: at most {I.MAX_GALLERY_FILES}"):
        I.build_gallery([many], clip, extract_dir=tmp_path / "z")

    huge = _declare_size(_zip(tmp_path / "huge.zip", {"zeros.png": red}), 3_000_000_000)
    with pytest.raises(MMDemoError, match="too large when extracted"):
        I.build_gallery([huge], clip, extract_dir=tmp_path / "w")


def test_too_many_gallery_files(clip, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    data = encode(Image.new("RGB", (4, 4)))
    for i in range(I.MAX_GALLERY_FILES + 1):
        (folder / f"{i:03d}.png").write_bytes(data)
    with pytest.raises(MMDemoError, match=f"Too many images: at most {I.MAX_GALLERY_FILES}"):
        I.build_gallery([folder], clip)
    g = I.build_gallery([folder], clip, max_files=I.MAX_GALLERY_FILES + 1)
    assert len(g) == I.MAX_GALLERY_FILES + 1


# --------------------------------------------------------------------------- gallery, cache, search


def test_cache_makes_reindexing_free(clip, tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    for fname in list(CAPTIONS)[:6]:
        (folder / fname).write_bytes((GALLERY / fname).read_bytes())
    seen = []
    first = I.build_gallery([folder], clip, cache_dir=tmp_path / "cache", progress=lambda n, t: seen.append((n, t)))
    assert first.encoded == 6 and seen[-1] == (6, 6) and [n for n, _ in seen] == sorted(n for n, _ in seen)
    again = I.build_gallery([folder], clip, cache_dir=tmp_path / "cache")
    assert again.encoded == 0
    np.testing.assert_allclose(again.index.embeddings, first.index.embeddings, atol=1e-6)
    (folder / "new.png").write_bytes(encode(Image.fromarray(scene("green", "ring"))))
    grown = I.build_gallery([folder], clip, cache_dir=tmp_path / "cache")
    assert grown.encoded == 1 and len(grown) == 7
    # The cache is keyed by content, not name: a renamed copy costs nothing either.
    (folder / "new.png").rename(folder / "renamed.png")
    assert I.build_gallery([folder], clip, cache_dir=tmp_path / "cache").encoded == 0


def test_gallery_items_and_captions(gallery):
    assert len(gallery) == len(CAPTIONS) and gallery.notices == []
    assert gallery.index.embeddings.shape[0] == len(CAPTIONS)
    np.testing.assert_allclose(np.linalg.norm(gallery.index.embeddings, axis=1), 1, atol=1e-4)
    for item in gallery.index.items:
        assert item["caption"] == CAPTIONS[item["name"]] and Path(item["path"]).is_file()


def test_search_by_colour_finds_that_colour(gallery, clip):
    found = own = 0
    for fname, (_, colour, shape) in SINGLES.items():
        res = I.search_images(gallery, f"a {colour} {shape}", clip, k=3)
        assert len(res.hits) == 3 and res.hits[0]["score"] >= res.hits[-1]["score"]
        found += any(colour in h["caption"] for h in res.hits)
    for fname, caption in CAPTIONS.items():
        own += fname in [h["label"] for h in I.search_images(gallery, caption, clip, k=3).hits]
    assert found >= 0.85 * len(SINGLES)
    assert own >= 0.75 * len(CAPTIONS)


def test_search_images_inputs(gallery, clip):
    for empty in ("", "   ", None):
        with pytest.raises(MMDemoError, match="Type what to search for"):
            I.search_images(gallery, empty, clip)
    assert len(I.search_images(gallery, "a red star", clip, k=1000).hits) == len(gallery)
    assert len(I.search_images(gallery, "a red star", clip, k=0).hits) == 1
    with pytest.raises(MMDemoError, match="whole number"):
        I.search_images(gallery, "a red star", clip, k="many")
    res = I.search_images(gallery, "a red star " * 40, clip, k=3)
    assert any(f"longer than {I.MAX_QUERY_CHARS} characters" in n for n in res.notices)
    assert any("context length" in n and "truncated" in n for n in res.notices)


def test_gallery_from_another_model_is_refused(gallery, clip):
    other = I.ImageGallery("some-other-model:123", gallery.index)
    with pytest.raises(MMDemoError, match="embedded with 'some-other-model:123'.*index it again"):
        I.search_images(other, "a red star", clip)
    with pytest.raises(MMDemoError, match="index it again"):
        I.embedding_map(other, clip, query_text="a red star")


def test_large_gallery_search_goes_through_faiss_with_the_same_answer(gallery, clip):
    from mmdemo.index import EmbeddingIndex

    idx = EmbeddingIndex(gallery.model_id, gallery.index.dim, gallery.index.embeddings.copy(),
                         list(gallery.index.items), exact_limit=10)
    approx = I.ImageGallery(gallery.model_id, idx)
    assert idx.uses_faiss
    for q in ("a red circle", "a large blue heart", "a small yellow star"):
        assert ([h["label"] for h in I.search_images(approx, q, clip, k=3).hits]
                == [h["label"] for h in I.search_images(gallery, q, clip, k=3).hits])


def test_default_gallery_is_bundled_else_rendered(clip, tmp_path, monkeypatch):
    assert I.default_gallery_files(tmp_path) == GALLERY
    import mmdemo.paths

    monkeypatch.setattr(mmdemo.paths, "EXAMPLES_DIR", tmp_path / "missing")
    folder = I.default_gallery_files(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "example-images"
    g = I.build_gallery([folder], clip)
    assert len(g) >= 8 and all(i["caption"] for i in g.index.items) and g.notices == []
    hits = I.search_images(g, "a red circle", clip, k=3).hits
    assert any("red" in h["caption"] for h in hits)


# --------------------------------------------------------------------------- texts by image, heatmap


def test_search_texts_ranks_the_matching_text_first(clip):
    texts = [f"a {c} {s}" for _, c, s in SINGLES.values()]
    right = 0
    for fname, (_, colour, shape) in SINGLES.items():
        res = I.search_texts(GALLERY / fname, texts, clip, k=3)
        assert len(res.hits) == 3 and res.hits[0]["score"] >= res.hits[1]["score"] >= res.hits[2]["score"]
        right += f"a {colour} {shape}" in [h["label"] for h in res.hits]
    assert right >= 0.75 * len(SINGLES)


def test_search_texts_inputs(clip):
    img = GALLERY / next(iter(SINGLES))
    for empty in ("", " \n \n", [], ["", "  "]):
        with pytest.raises(MMDemoError, match="at least one text"):
            I.search_texts(img, empty, clip)
    with pytest.raises(MMDemoError, match=f"Too many texts.*at most {I.MAX_CANDIDATES}"):
        I.search_texts(img, [f"text {i}" for i in range(I.MAX_CANDIDATES + 1)], clip)
    with pytest.raises(MMDemoError, match="Upload, paste or pick an image"):
        I.search_texts(None, "a red star", clip)
    res = I.search_texts(img, "a red star\n" + "a very long text " * 20, clip)
    assert any("truncated" in n for n in res.notices)
    # What upload widgets hand over: a dict with a path, a PIL image, an array.
    pil = Image.open(img).convert("RGB")
    scores = [I.search_texts(src, "a red star\na blue ring", clip).hits[0]["score"]
              for src in ({"path": str(img)}, pil, np.asarray(pil), str(img))]
    assert max(scores) - min(scores) < 1e-5


def test_heatmap_shape_and_agreement_with_search_texts(clip):
    files = [GALLERY / f for f in list(SINGLES)[:5]]
    texts = [f"a {c} {s}" for _, c, s in list(SINGLES.values())[:5]] + ["a green heart"]
    h = I.similarity_heatmap(files, "\n".join(texts), clip)
    assert h.similarity.shape == (5, 6) and h.images == [f.name for f in files] and h.texts == texts
    for row, f in zip(h.similarity, files):
        hits = I.search_texts(f, texts, clip, k=len(texts)).hits
        assert hits[0]["label"] == texts[int(row.argmax())]
        np.testing.assert_allclose(sorted(row, reverse=True), [x["score"] for x in hits], atol=1e-5)
    # The diagonal (each image with its own caption) beats the average of the rest.
    diag = np.diag(h.similarity[:, :5])
    assert (diag > h.similarity[:, :5].mean(axis=1)).sum() >= 4


def test_heatmap_limits_and_unreadable_images(clip, tmp_path):
    good = GALLERY / next(iter(SINGLES))
    with pytest.raises(MMDemoError, match=f"Too many images.*at most {I.MAX_HEATMAP_IMAGES}"):
        I.similarity_heatmap([good] * (I.MAX_HEATMAP_IMAGES + 1), "a red star", clip)
    with pytest.raises(MMDemoError, match="at least one image"):
        I.similarity_heatmap([], "a red star", clip)
    bad = write(tmp_path / "broken.png", b"\x89PNG garbage")
    h = I.similarity_heatmap([good, bad], ["a red star", "a blue ring"], clip)
    assert h.similarity.shape == (1, 2) and any("Skipped 1 unreadable" in n and "broken.png" in n for n in h.notices)
    assert [n.code for n in h.notices if n.startswith("Skipped")] == ["files_unreadable"]
    with pytest.raises(MMDemoError, match="None of the images could be read.*broken.png"):
        I.similarity_heatmap([bad], "a red star", clip)
    anim = odd_images(tmp_path)["animated"]
    h = I.similarity_heatmap([good, anim], ["a red star"], clip)
    assert [n.subject for n in h.notices if "first frame" in n] == ["anim.gif"]  # the UI picks them by subject
    with pytest.raises(MMDemoError, match="at least one text"):
        I.similarity_heatmap([good], "", clip)


# --------------------------------------------------------------------------- embedding map


def test_embedding_map_shapes(gallery, clip):
    m = I.embedding_map(gallery, clip)
    assert m.points.shape == (len(gallery), 2) and m.labels == [i["name"] for i in gallery.index.items]
    assert m.query_point is None and m.query_label == ""
    assert 0 < m.explained_variance[1] <= m.explained_variance[0] and sum(m.explained_variance) <= 1 + 1e-6
    assert np.abs(m.points.mean(axis=0)).max() < 1e-4  # centred
    # The two axes are the gallery's directions of largest spread: random directions spread less.
    rng = np.random.default_rng(0)
    emb = gallery.index.embeddings - gallery.index.embeddings.mean(axis=0)
    rand = rng.normal(size=(emb.shape[1], 50))
    rand /= np.linalg.norm(rand, axis=0)
    assert m.points[:, 0].var() > (emb @ rand).var(axis=0).max()


def test_text_query_lands_among_its_best_matches(gallery, clip):
    near = 0
    for caption in CAPTIONS.values():
        m = I.embedding_map(gallery, clip, query_text=caption)
        assert m.query_point.shape == (2,) and m.query_label == caption
        best = I.search_images(gallery, caption, clip, k=1).hits[0]["label"]
        dist = np.linalg.norm(m.points - m.query_point, axis=1)
        near += best in [m.labels[i] for i in np.argsort(dist)[:3]]
    assert near >= 0.8 * len(CAPTIONS)


def test_image_query_lands_on_itself(gallery, clip):
    for fname in list(CAPTIONS)[:4]:
        m = I.embedding_map(gallery, clip, query_image=GALLERY / fname)
        dist = np.linalg.norm(m.points - m.query_point, axis=1)
        assert m.labels[int(dist.argmin())] == fname and dist.min() < 1e-3 and m.query_label == fname
    both = I.embedding_map(gallery, clip, query_text="a red star", query_image=GALLERY / fname)
    assert both.query_label == "a red star"


# --------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv, as_json=True):
    from mmdemo.cli import main

    code = main([*map(str, argv), *(["--json"] if as_json else [])])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if as_json and code == 0 else out.out), out.err


def test_cli_index_build_is_cached_and_search_finds_red(capsys, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for fname in CAPTIONS:
        (folder / fname).write_bytes((GALLERY / fname).read_bytes())
    (folder / "captions.json").write_text(json.dumps(CAPTIONS))
    index = tmp_path / "out" / "gallery.npz"
    code, first, _ = run_cli(capsys, "index", "build", folder, "--out", index, "--cache-dir", tmp_path / "cache")
    assert code == 0 and first["images"] == len(CAPTIONS) and first["encoded"] == len(CAPTIONS)
    assert index.is_file() and not list(index.parent.glob(".*.tmp"))  # saved atomically, nothing left behind
    code, again, _ = run_cli(capsys, "index", "build", folder, "--out", index, "--cache-dir", tmp_path / "cache")
    assert code == 0 and again["encoded"] == 0 and again["cached"] == len(CAPTIONS)

    code, res, _ = run_cli(capsys, "search", index, "a red ring", "-k", "3")
    assert code == 0 and len(res["hits"]) == 3 and res["images"] == len(CAPTIONS)
    assert any("red" in h["caption"] for h in res["hits"]) and all(Path(h["path"]).is_file() for h in res["hits"])
    code, text, _ = run_cli(capsys, "search", index, "a red ring", as_json=False)
    assert code == 0 and "1. " in text and "red" in text

    code, text, err = run_cli(capsys, "index", "build", tmp_path / "nothing-here", "--out", index, as_json=False)
    assert code == 2 and "was not found" in err and "Traceback" not in err


def test_cli_index_from_a_zip_keeps_the_files(capsys, tmp_path):
    z = _zip(tmp_path / "set.zip", {"red.png": encode(Image.fromarray(scene("red", "circle"))),
                                    "blue.png": encode(Image.fromarray(scene("blue", "square")))})
    index = tmp_path / "idx.npz"
    code, built, _ = run_cli(capsys, "index", "build", z, "--out", index, "--cache-dir", tmp_path / "c")
    assert code == 0 and built["images"] == 2
    code, res, _ = run_cli(capsys, "search", index, "a red circle", "-k", "1")
    assert res["hits"][0]["label"] == "red.png" and Path(res["hits"][0]["path"]).is_file()


def test_cli_refuses_an_index_from_another_model(capsys, tmp_path):
    from mmdemo.index import EmbeddingIndex

    index = tmp_path / "g.npz"
    assert run_cli(capsys, "index", "build", GALLERY, "--out", index, "--cache-dir", tmp_path / "c")[0] == 0
    idx = EmbeddingIndex.load(index)
    idx.model_id = "ViT-B-32/laion2b:0123"
    idx.save(index)
    code, _, err = run_cli(capsys, "search", index, "a red star")
    assert code == 2 and "built with the model 'ViT-B-32/laion2b:0123'" in err and "Rebuild" in err
    assert "Traceback" not in err
    write(tmp_path / "junk.npz", b"not an index")
    code, _, err = run_cli(capsys, "search", tmp_path / "junk.npz", "a red star")
    assert code == 2 and "not an mmdemo index" in err
    code, _, err = run_cli(capsys, "search", tmp_path / "absent.npz", "a red star")
    assert code == 2 and "not found" in err


def test_cli_caption_rank_and_search_texts(capsys, tmp_path):
    red = GALLERY / next(f for f, (_, c, _) in SINGLES.items() if c == "red")
    code, rows, _ = run_cli(capsys, "caption", red, "--method", "beam", "--beams", "3", "--num", "2")
    assert code == 0 and rows[0]["image"] == str(red) and 1 <= len(rows[0]["captions"]) <= 2
    assert "red" in " ".join(rows[0]["captions"])
    code, text, _ = run_cli(capsys, "caption", red, "--method", "greedy", as_json=False)
    assert code == 0 and text.startswith(f"{red}: ") and "red" in text

    broken = write(tmp_path / "broken.png", b"")
    code, text, err = run_cli(capsys, "caption", red, broken, as_json=False)
    assert code == 2 and "red" in text and "empty (0 bytes)" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "caption", red, "--method", "greedy", "--num", "2", as_json=False)
    assert code == 2 and "number of captions" in err

    code, res, _ = run_cli(capsys, "rank-captions", red, "a blue ring", "a red diamond", "a green heart")
    assert code == 0 and res["ranked"][0]["label"] == "a red diamond" and len(res["ranked"]) == 3
    code, res, _ = run_cli(capsys, "rank-captions", red)
    assert code == 0 and len(res["ranked"]) == len(I.caption_bank(None)) and "red" in res["ranked"][0]["label"]
    code, text, _ = run_cli(capsys, "rank-captions", red, "--top", "3", as_json=False)
    assert code == 0 and "built-in caption bank" in text and text.count("%") == 3

    code, res, _ = run_cli(capsys, "search-texts", red, "a blue ring", "a red diamond", "a white star", "-k", "2")
    assert code == 0 and [h["label"] for h in res["hits"]][0] == "a red diamond" and len(res["hits"]) == 2
    code, _, err = run_cli(capsys, "search-texts", tmp_path / "missing.png", "a red star")
    assert code == 2 and "was not found" in err
