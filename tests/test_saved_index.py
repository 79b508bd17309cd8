"""Saved indexes served by memory map (issue 16, part 3): `index build --modality`, `search`,
and the --gallery-index setting that the Image and Audio tabs search.

The CLI runs as a user runs it (a subprocess) for the build and the searches; the
unhappy paths run in-process (``mmdemo.cli.main``), which prints what the process would.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingIndex
from mmdemo.settings import Settings, parse_settings
from mmdemo.tasks import audio as A
from mmdemo.tasks import image as I
from mmdemo.tasks import saved_index as S
from tests.helpers.saved_indexes import SAVED, other_model, saved_image_index, saved_sound_folder

REPO = Path(__file__).resolve().parents[1]


def cli(*argv, as_json=True):
    """`python -m mmdemo ...` in a process of its own: (exit code, JSON or stdout, stderr)."""
    out = subprocess.run([sys.executable, "-m", "mmdemo", *map(str, argv), *(["--json"] if as_json else [])],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ})
    body = json.loads(out.stdout) if as_json and out.returncode == 0 else out.stdout
    return out.returncode, body, out.stderr


def cli_here(capsys, *argv):
    from mmdemo.cli import main

    code = main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An image and a sound index built by `index build` from copies of the example galleries."""
    root = tmp_path_factory.mktemp("saved")
    images = root / "images"
    from mmdemo.media import IMAGE_SUFFIXES
    from tests.helpers.saved_indexes import copy_gallery

    copy_gallery(I.default_gallery_files(None), images, tuple(IMAGE_SUFFIXES))
    sounds = saved_sound_folder(root / "sounds")
    code, img, err = cli("index", "build", images, "--out", root / "img.npz", "--cache-dir", root / "cache")
    assert code == 0, err
    code, snd, err = cli("index", "build", "--modality", "audio", sounds, "--out", root / "snd.npz",
                         "--cache-dir", root / "cache")
    assert code == 0, err
    return {"root": root, "images": images, "sounds": sounds, "img": root / "img.npz", "snd": root / "snd.npz",
            "img_report": img, "snd_report": snd}


# --------------------------------------------------------------------------- CLI: build and search


def test_cli_builds_a_sound_index_of_windows(built):
    report = built["snd_report"]
    assert report["modality"] == "audio" and report["sounds"] == 17  # 16 examples + the 8 s clip
    assert report["search"]["kind"] == "exact" and report["search"]["recall_at_10"] == 1.0
    assert report["windows"] > report["sounds"]  # the long clip is several windows
    index = EmbeddingIndex.load(built["snd"])
    assert index.modality == "audio" and len(index) == report["windows"]
    long = [it for it in index.items if it["name"].startswith(f"{SAVED}long")]
    assert len(long) >= 3 and len({it["clip"] for it in long}) == 1
    assert long[0]["start"] == 0.0 and long[-1]["end"] == pytest.approx(8.0, abs=0.01)
    assert set(long[0]) == {"name", "path", "duration", "caption", "clip", "start", "end"}
    assert EmbeddingIndex.load(built["img"]).modality == "image"


def test_cli_searches_a_saved_image_index_and_says_what_it_searched(built):
    code, res, err = cli("search", built["img"], "a red diamond", "-k", "3")
    assert code == 0, err
    assert res["index"]["kind"] == "exact" and res["index"]["items"] == 24 and res["index"]["modality"] == "image"
    assert res["index"]["path"] == str(built["img"]) and len(res["hits"]) == 3
    assert all(h["label"].startswith(SAVED) and Path(h["path"]).is_file() for h in res["hits"])
    assert "red diamond" in res["hits"][0]["caption"]
    code, text, _ = cli("search", built["img"], "a red diamond", as_json=False)
    assert code == 0 and text.startswith("Searching img.npz: 24 images · exact search")
    assert "1. " in text and "red diamond" in text


def test_cli_build_says_how_a_large_index_is_searched_and_takes_a_recall_target(built, capsys, tmp_path,
                                                                              monkeypatch):
    import mmdemo.index.ann as ann

    monkeypatch.setattr(ann, "EXACT_MAX_BYTES", 1)  # the 24 examples count as a large gallery
    out = tmp_path / "big.npz"
    code, text, err = cli_here(capsys, "index", "build", built["images"], "--out", out, "--target-recall", "0.9")
    assert code == 0, err
    assert "Search: big.npz: 24 images · HNSW (M 32, efConstruction 64, efSearch " in text
    assert "held-out queries" in text
    assert EmbeddingIndex.load(out).info()["kind"] == "hnsw"
    with pytest.raises(SystemExit):
        cli_here(capsys, "index", "build", built["images"], "--out", out, "--target-recall", "2")
    assert "--target-recall: must be a recall between 0 and 1" in capsys.readouterr().err


def test_cli_searches_a_saved_sound_index_one_hit_per_sound(built, audio):
    code, res, err = cli("search", built["snd"], "a burst of white noise", "-k", "17")
    assert code == 0, err
    labels = [h["label"] for h in res["hits"]]
    assert len(labels) == 17 == len(set(labels))  # every sound once, though there are more windows
    assert res["index"]["modality"] == "audio" and res["windows"] == built["snd_report"]["windows"]
    # The same answer as the in-memory gallery of the same files: same sounds, scores and best windows.
    gallery = A.build_gallery([built["sounds"]], audio)
    expected = A.search_gallery(gallery, "a burst of white noise", audio, k=17)
    assert labels == [h["label"] for h in expected]
    for got, want in zip(res["hits"], expected):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert (got["start"], got["end"]) == (want["start"], want["end"])
    code, text, _ = cli("search", built["snd"], "a rising chirp", "-k", "2", as_json=False)
    windows = built["snd_report"]["windows"]
    assert code == 0 and text.startswith(f"Searching snd.npz: 17 sounds ({windows} windows)")
    assert "1. " in text and "2. " in text and "3. " not in text and " s)" in text


# --------------------------------------------------------------------------- unhappy paths


def test_an_index_from_another_model_is_refused_with_how_to_rebuild(built, tmp_path, capsys, clip, audio):
    for name, modality in (("img", "image"), ("snd", "audio")):
        other = other_model(built[name], tmp_path / f"other-{name}.npz")
        code, _, err = cli_here(capsys, "search", other, "a red star")
        assert code == 2 and "built with the model 'ViT-B-32/laion2b:0123'" in err and "Traceback" not in err
        assert "index it again with the current model" in err and f"--modality {modality}" in err
    saved = S.open_gallery_indexes([tmp_path / "other-img.npz", tmp_path / "other-snd.npz"])
    with pytest.raises(MMDemoError, match="index it again with the current model") as exc:
        I.search_images(I.saved_gallery(saved["image"]), "a red star", clip)
    assert exc.value.code == "index_model_mismatch"
    with pytest.raises(MMDemoError, match="index it again with the current model"):
        I.embedding_map(I.saved_gallery(saved["image"]), clip, query_text="a red star")
    with pytest.raises(MMDemoError, match="index it again with the current model"):
        A.search_gallery(saved["audio"], "a rising chirp", audio)


def test_missing_foreign_and_doubled_indexes_are_clear_errors(built, tmp_path, capsys):
    with pytest.raises(MMDemoError, match="Index file not found") as exc:
        S.open_gallery_indexes([tmp_path / "absent.npz"])
    assert exc.value.code == "index_not_found"
    (tmp_path / "junk.npz").write_bytes(b"not an index at all")
    with pytest.raises(MMDemoError, match="not an mmdemo index") as exc:
        S.open_gallery_indexes([tmp_path / "junk.npz"])
    assert exc.value.code == "index_invalid"
    code, _, err = cli_here(capsys, "search", tmp_path / "junk.npz", "a red star")
    assert code == 2 and "not an mmdemo index" in err
    code, _, err = cli_here(capsys, "search", tmp_path / "absent.npz", "a red star")
    assert code == 2 and "not found" in err

    (tmp_path / "again.npz").write_bytes(built["img"].read_bytes())
    with pytest.raises(MMDemoError, match="Two saved image indexes") as exc:
        S.open_gallery_indexes([built["img"], built["snd"], tmp_path / "again.npz"])
    assert exc.value.code == "gallery_index_duplicate" and "one --gallery-index per kind" in str(exc.value)
    both = S.open_gallery_indexes([built["snd"], built["img"]])  # one of each: routed by what they hold
    assert {m: s.path for m, s in both.items()} == {"image": built["img"], "audio": built["snd"]}
    assert isinstance(both["image"].index.embeddings, np.memmap)  # opened by memory map, not loaded
    with pytest.raises(MMDemoError, match="not of images"):
        I.saved_gallery(both["audio"])


def test_build_demo_stops_on_a_bad_index_and_app_py_exits_with_the_message(built, tmp_path):
    from mmdemo.ui.app import build_demo

    with pytest.raises(MMDemoError, match="Two saved audio indexes"):
        build_demo(Settings(device="cpu", gallery_indexes=(built["snd"], built["snd"])))
    out = subprocess.run([sys.executable, "app.py", "--gallery-index", str(tmp_path / "gone.npz")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"error: Index file not found: {tmp_path / 'gone.npz'}"


def test_gallery_index_settings_from_flags_and_environment():
    two = f"a.npz{os.pathsep}b.npz"
    assert parse_settings([], {}).gallery_indexes == ()
    assert parse_settings(["--gallery-index", "x.npz", "--gallery-index", "y.npz"], {}).gallery_indexes == (
        Path("x.npz"), Path("y.npz"))
    assert parse_settings([], {"MMDEMO_GALLERY_INDEX": two}).gallery_indexes == (Path("a.npz"), Path("b.npz"))
    assert parse_settings(["--gallery-index", "x.npz"], {"MMDEMO_GALLERY_INDEX": two}).gallery_indexes == (
        Path("x.npz"),)  # flags win
    assert Settings(gallery_indexes=["x.npz"]).gallery_indexes == (Path("x.npz"),)


# --------------------------------------------------------------------------- large indexes


@pytest.fixture(scope="module")
def big(tmp_path_factory, clip):
    """3,000 images (24 scenes + random padding) in an approximate (HNSW) index."""
    root = tmp_path_factory.mktemp("big")
    return S.open_index(saved_image_index(root / "images", clip, root / "big.npz", padding=2976, exact_limit=100))


def test_a_large_saved_index_is_described_by_its_kind_and_recall(big, clip):
    line = S.summary(big)
    assert line.startswith("big.npz: 3,000 images · HNSW (M ") and "efSearch" in line
    recall = float(line.split("recall@10 ")[1].split()[0])
    assert 0.9 <= recall <= 1.0 and line.endswith("held-out queries")
    hits = I.search_images(I.saved_gallery(big), "a red diamond", clip, k=5).hits
    assert len(hits) == 5 and any(h["label"] == f"{SAVED}00-small-red-diamond.png" for h in hits[:3])


def test_the_map_of_a_large_index_is_a_seeded_sample_with_the_results_on_it(big, clip):
    from mmdemo.ui.image_figures import map_figure

    gallery = I.saved_gallery(big)
    m = I.embedding_map(gallery, clip, query_text="a red diamond", max_points=500)
    assert m.sampled and m.total == 3000 and 480 <= len(m.points) <= 500 and len(m.captions) == len(m.labels)
    hits = [h["label"] for h in I.search_images(gallery, "a red diamond", clip, k=5).hits]
    assert set(hits) <= set(m.labels)  # the results are on it, sample or not
    again = I.embedding_map(gallery, clip, query_text="a red diamond", max_points=500)
    assert again.labels == m.labels and np.allclose(again.points, m.points)  # seeded: the same map twice
    fig = map_figure(m, hits)
    assert f"{len(m.labels):,} of 3,000 images (a seeded sample and the best matches)" in fig.layout.title.text
    small = I.embedding_map(gallery, clip, query_text="a red diamond", max_points=5000)
    assert not small.sampled and len(small.points) == 3000


class _Spy:
    """An index that records how many results each search asked for."""

    def __init__(self, index):
        self.index, self.asked = index, []

    def __len__(self):
        return len(self.index)

    def search(self, q, k=10):
        self.asked.append(k)
        return self.index.search(q, k=k)


def test_a_sound_search_asks_the_index_for_windows_and_widens_until_k_sounds():
    rng = np.random.default_rng(0)
    n_sounds, per_sound, dim = 6, 40, 16
    emb = rng.standard_normal((n_sounds * per_sound, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = emb[0] + 0.05 * rng.standard_normal(dim).astype(np.float32)  # close to sound 0's windows
    q /= np.linalg.norm(q)
    emb[:per_sound] = emb[0] + 0.1 * rng.standard_normal((per_sound, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    items = [{"name": f"s{w // per_sound}.wav", "path": None, "duration": 80.0, "caption": "",
              "clip": w // per_sound, "start": 2.0 * (w % per_sound), "end": 2.0 * (w % per_sound) + 4}
             for w in range(len(emb))]
    index = EmbeddingIndex("m", dim, modality="audio")
    index.add(emb, items)
    spy = _Spy(index)
    saved = S.SavedIndex(Path("s.npz"), spy, {})
    hits = S.search_sounds(saved, q, k=3)
    sims = emb @ q
    best = {c: sims[c * per_sound:(c + 1) * per_sound].max() for c in range(n_sounds)}
    want = sorted(best, key=lambda c: -best[c])[:3]
    assert [h["label"] for h in hits] == [f"s{c}.wav" for c in want]
    assert [round(h["score"], 5) for h in hits] == [round(float(best[c]), 5) for c in want]
    # Sound 0's 40 windows fill the first 24 asked for: the search widened once, never to everything.
    assert spy.asked == [3 * S.WINDOWS_PER_SOUND, 3 * S.WINDOWS_PER_SOUND * S._WIDEN] and spy.asked[-1] < len(index)
    spy.asked.clear()
    assert len(S.search_sounds(saved, q, k=10)) == n_sounds  # fewer sounds than asked: all of them
    assert spy.asked[-1] == len(index)


def test_missing_files_notice_counts_and_names_them():
    assert S.missing_files_notice([], "thumbnail") is None
    n = S.missing_files_notice(["a.png", "b.png", "c.png", "d.png"], "thumbnail")
    assert n.code == "index_files_missing" and n.startswith("4 result(s) have no thumbnail")
    assert "a.png, b.png, c.png ..." in n and "index them again" in n


def test_a_huge_result_count_is_capped_not_a_dump_of_the_index():
    from mmdemo.scores import MAX_SEARCH_RESULTS, result_count

    assert result_count(10**9) == MAX_SEARCH_RESULTS == 1000 and result_count(0) == 1
    with pytest.raises(MMDemoError, match="whole number"):
        result_count("lots")


def test_cli_build_records_absolute_paths_and_points_to_the_right_options(built, capsys, tmp_path, monkeypatch):
    """An index built from `photos/` must still find its files when the app runs elsewhere."""
    monkeypatch.chdir(built["images"].parent)
    out = tmp_path / "rel.npz"
    code, _, err = cli_here(capsys, "index", "build", built["images"].name, "--out", out)
    assert code == 0, err
    paths = [it["path"] for it in EmbeddingIndex.load(out).items]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
    # Lists of paths are Ray's; too many files names the options that allow more.
    (tmp_path / "list.txt").write_text(str(built["images"] / "x.png") + "\n")
    code, _, err = cli_here(capsys, "index", "build", tmp_path / "list.txt", "--out", out)
    assert code == 2 and "are read by --engine ray" in err
    code, _, err = cli_here(capsys, "index", "build", built["images"], "--out", out, "--max-files", "3")
    assert code == 2 and "raise --max-files (it is 3), or index a large image gallery with --engine ray" in err
    code, _, err = cli_here(capsys, "index", "build", built["images"], "--out", out, "--workers", "2")
    assert code == 2 and "--workers only apply with --engine ray" in err


def test_the_index_line_says_when_an_approximate_search_fell_back_to_exact(tmp_path):
    from mmdemo.tasks.saved_index import open_index, summary

    x = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
    idx = EmbeddingIndex("m", 32, exact_limit=0, target_recall=1.01)  # a target no graph search reaches
    idx.add(x / np.linalg.norm(x, axis=1, keepdims=True), [{"name": str(i)} for i in range(2000)])
    line = summary(open_index(idx.save(tmp_path / "u.npz")))
    assert line.startswith("u.npz: 2,000 images · exact search (every one compared, recall@10 1.000; HNSW reached "
                           "only recall@10 ")
    assert line.endswith("(M 32, efConstruction 64, efSearch 1024), below the target 1.01)")
