"""Whole folders (mmdemo.tasks.folders and `python -m mmdemo folder`) on the tiny bundle:
one row per file, bad files as rows with their error, captions.json read, CSV/JSON out."""

import csv
import json
import zipfile

import pytest

from mmdemo.errors import MMDemoError
from mmdemo.tasks import folders as F
from tests.helpers.folders import corrupt_png, write_scenes, write_sounds, zip_bytes, zip_folder


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes") / "pics"
    captions = write_scenes(folder, n=8)
    corrupt_png(folder / "broken.png")
    (folder / "notes.txt").write_text("not an image")
    return folder, captions


def models(clip=None, captioner=None, audio=None):
    return F.FolderModels(clip=clip, captioner=captioner, audio=audio)


def run(sources, task, clip=None, captioner=None, audio=None, extract_dir=None, **options):
    r = F.FolderRun(sources, task, F.FolderOptions(**options), models(clip, captioner, audio),
                    extract_dir=extract_dir, batch_size=3)
    return r, r.rows()


def test_rank_over_a_folder_reads_its_captions_and_keeps_going_past_a_broken_file(scene_dir, clip):
    folder, captions = scene_dir
    r, rows = run([folder], "rank", clip)
    assert [row.file for row in rows] == sorted(list(captions) + ["broken.png"])
    (bad,) = [row for row in rows if row.error]
    assert bad.file == "broken.png" and "broken.png" in bad.error and bad.answer == "" and bad.score is None
    good = [row for row in rows if not row.error]
    # No candidates typed: the folder's own captions are ranked, and each file shows its own caption.
    assert all(row.caption == captions[row.file] and row.answer in captions.values() for row in good)
    assert sum(row.answer == row.caption for row in good) >= 6
    assert all(0 < row.score <= 1 for row in good)
    assert any("notes.txt" in n for n in r.notices)  # the stray file is told about, not a row


def test_rank_candidates_are_the_runs_own_captions_not_every_line_of_captions_json(tmp_path, clip):
    captions = write_scenes(tmp_path / "pics", n=3)
    # A captions.json naming thousands of files the upload does not hold.
    many = {**{f"other{i}.png": f"a small red star number {i}" for i in range(5000)}, **captions}
    (tmp_path / "pics" / "captions.json").write_text(json.dumps(many))
    r, rows = run([tmp_path / "pics"], "rank", clip)
    assert sorted(r.labels) == sorted(set(captions.values()))
    assert {row.answer for row in rows} <= set(captions.values())


def test_zero_shot_labels_name_the_colour(scene_dir, clip):
    folder, captions = scene_dir
    # Two templates: averaged per label, as the tabs' prompt ensembles are.
    _, rows = run([folder], "zero_shot", clip, texts="red\ngreen\nblue\nyellow",
                  template="a {} shape\nthere is a {} shape")
    good = [row for row in rows if not row.error]
    assert {row.answer for row in good} <= {"red", "green", "blue", "yellow"}
    assert sum(row.answer in captions[row.file] for row in good) >= 6


def test_batched_captions_are_the_one_image_captions(scene_dir, captioner):
    from mmdemo.tasks.image import caption_image

    folder, captions = scene_dir
    files = [folder / f for f in sorted(captions)[:4]]
    _, rows = run(files, "caption", captioner=captioner, method="greedy", max_length=16)
    assert [row.answer for row in rows] == [caption_image(f, captioner, method="greedy", max_length=16).captions[0]
                                           for f in files]
    assert all(0 < row.score <= 1 for row in rows)  # the image's cosine similarity to its own caption


def test_a_zip_with_captions_json_at_its_root_and_files_in_a_subfolder(tmp_path, clip):
    captions = write_scenes(tmp_path / "src", n=4, captions=False)
    (tmp_path / "src" / "captions.json").write_text(json.dumps({f"pics/{k}": v for k, v in captions.items()}))
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name in captions:
            zf.write(tmp_path / "src" / name, f"pics/{name}")
        zf.write(tmp_path / "src" / "captions.json", "captions.json")
    _, rows = run([z], "rank", clip, extract_dir=tmp_path / "x")
    assert [row.caption for row in rows] == [captions[k] for k in sorted(captions)]
    assert [row.file for row in rows] == [f"pics/{n}" for n in sorted(captions)]  # never by a temp folder


def test_match_audio_over_sounds_with_a_broken_one(tmp_path, audio):
    write_sounds(tmp_path)
    (tmp_path / "cut.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    _, rows = run([tmp_path], "match_audio", audio=audio, texts="a rising chirp\nwhite noise\na low tone")
    assert len(rows) == 4
    assert [row.file for row in rows if row.error] == ["cut.wav"]
    by_file = {row.file: row.answer for row in rows}
    assert by_file["01-noise-white.wav"] == "white noise" and by_file["00-chirp-rising.wav"] == "a rising chirp"


def test_classify_with_a_head_uses_the_text_or_each_files_caption(scene_dir, tiny_registry, clip):
    from mmdemo.tasks.classify import resolve_head

    folder, captions = scene_dir
    head = resolve_head(tiny_registry, "tiny-head-scene_qa-concat")
    _, rows = run([folder], "classify", clip, head=head, text="is there a red shape?")
    good = [row for row in rows if not row.error]
    assert len(good) == len(captions) and {row.answer for row in good} <= set(head.labels)
    no_text = folder.parent / "nocaps"
    write_scenes(no_text, n=2, captions=False)
    _, rows = run([no_text], "classify", clip, head=head)
    assert all("No text for" in row.error for row in rows) and len(rows) == 2


def test_a_head_with_audio_pairs_each_image_with_its_sound(tmp_path, tiny_registry, clip, audio):
    from mmdemo.tasks.classify import resolve_head

    head = resolve_head(tiny_registry, "tiny-head-scene_sound_match-concat")
    write_scenes(tmp_path, n=2)
    sounds = write_sounds(tmp_path / "s", kinds=(("chirp", "rising"),))
    (tmp_path / "s" / next(iter(sounds))).rename(tmp_path / "000-red-circle.wav")
    _, rows = run([tmp_path], "classify", clip, audio=audio, head=head, text="a red circle")
    by_file = {row.file: row for row in rows}
    assert by_file["000-red-circle.png"].answer in head.labels and not by_file["000-red-circle.png"].error
    assert "000-red-circle.png" not in by_file["001-green-circle.png"].error
    assert "001-green-circle.wav" in by_file["001-green-circle.png"].error


def test_what_no_file_can_fix_is_refused_before_any_work(tmp_path, clip):
    write_scenes(tmp_path / "pics", n=4)
    with pytest.raises(MMDemoError, match="at most 3") as err:
        F.FolderRun([tmp_path / "pics"], "rank", F.FolderOptions(), models(clip), max_files=3)
    assert err.value.code == "too_many_files"
    with pytest.raises(MMDemoError, match="at least one label"):
        F.FolderRun([tmp_path / "pics"], "zero_shot", F.FolderOptions(texts=""), models(clip))
    empty = tmp_path / "empty.zip"
    empty.write_bytes(zip_bytes({}))
    with pytest.raises(MMDemoError, match="No images found") as err:
        F.FolderRun([empty], "rank", F.FolderOptions(), models(clip), extract_dir=tmp_path / "x")
    junk = tmp_path / "only-text.zip"
    junk.write_bytes(zip_bytes({"a.txt": b"hello", "captions.json": b"{}"}))
    with pytest.raises(MMDemoError, match="No images found"):
        F.FolderRun([junk], "rank", F.FolderOptions(), models(clip), extract_dir=tmp_path / "y")
    fake = tmp_path / "fake.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(MMDemoError, match="not a valid zip") as err:
        F.FolderRun([fake], "rank", F.FolderOptions(), models(clip), extract_dir=tmp_path / "z")
    with pytest.raises(MMDemoError, match="exactly once"):
        F.FolderRun([tmp_path / "pics"], "zero_shot", F.FolderOptions(texts="red", template="red"), models(clip))
    with pytest.raises(MMDemoError, match="no audio model"):
        F.FolderRun([tmp_path / "pics"], "match_audio", F.FolderOptions(texts="a chirp"), models(clip))
    with pytest.raises(MMDemoError, match="Unknown task"):
        F.FolderRun([tmp_path / "pics"], "dance", F.FolderOptions(), models(clip))
    with pytest.raises(MMDemoError, match="Upload a zip"):
        F.FolderRun([], "rank", F.FolderOptions(), models(clip))


def test_results_files_are_parseable_and_hold_the_rows_so_far(scene_dir, tmp_path, clip):
    folder, captions = scene_dir
    r = F.FolderRun([folder], "rank", F.FolderOptions(), models(clip), batch_size=4)
    rows = next(r.batches())  # stopped after one batch, as the Stop button does
    F.write_results(tmp_path / "r.csv", rows)
    F.write_results(tmp_path / "r.json", rows, r.summary(rows, complete=False))
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["file"] for t in table] == [row.file for row in rows] and len(table) == 4
    assert float(table[0]["score"]) == pytest.approx(rows[0].score, abs=1e-4)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["done"] == 4 and data["files"] == len(captions) + 1 and data["complete"] is False
    assert data["rows"][0]["caption"] == captions[rows[0].file]
    assert data["labels"] == sorted(set(captions.values()))  # what was ranked: the folder's own captions
    assert not list(tmp_path.glob(".*.tmp"))
    # A file name that a spreadsheet would run as a formula is written as text.
    F.write_results(tmp_path / "f.csv", [F.FolderRow("=HYPERLINK(1).png", "a", 0.5)])
    assert list(csv.reader((tmp_path / "f.csv").read_text().splitlines()))[1][0] == "'=HYPERLINK(1).png"
    with pytest.raises(MMDemoError, match=r"\.csv or \.json"):
        F.write_results(tmp_path / "r.xlsx", rows)


# --------------------------------------------------------------------------- galleries read captions.json


def test_image_gallery_from_a_zip_or_a_loose_captions_json_shows_captions(tmp_path, clip):
    from mmdemo.tasks.image import build_gallery, search_images

    captions = write_scenes(tmp_path / "g", n=4)
    z = zip_folder(tmp_path / "g", tmp_path / "g.zip", prefix="set/")
    gallery = build_gallery([z], clip, extract_dir=tmp_path / "x")
    assert {it["name"]: it["caption"] for it in gallery.index.items} == captions
    assert not gallery.notices  # captions.json is no stray file
    hit = search_images(gallery, "a large red circle", clip, k=1).hits[0]
    assert hit["caption"] == captions[hit["label"]]
    # Uploaded as separate files (each lands in a folder of its own), captions.json still counts.
    loose = []
    for i, name in enumerate(list(captions) + ["captions.json"]):
        (tmp_path / f"up{i}").mkdir()
        loose.append(tmp_path / f"up{i}" / name)
        loose[-1].write_bytes((tmp_path / "g" / name).read_bytes())
    gallery = build_gallery([str(p) for p in loose], clip)
    assert {it["name"]: it["caption"] for it in gallery.index.items} == captions


# --------------------------------------------------------------------------- CLI


def cli(capsys, *argv):
    from mmdemo.cli import main

    code = main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_folder_writes_csv_and_json(scene_dir, tmp_path, capsys):
    folder, captions = scene_dir
    out_csv, out_json = tmp_path / "out" / "results.csv", tmp_path / "results.json"
    code, out, _ = cli(capsys, "folder", "rank-captions", folder, "--out", out_csv, "--out", out_json)
    assert code == 0 and "1 error(s)" in out and "broken.png: error:" in out
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(captions) + 1 and {t["file"] for t in table} >= set(captions)
    assert json.loads(out_json.read_text())["complete"] is True
    code, out, _ = cli(capsys, "folder", "zero-shot", folder, "--label", "red", "--label", "blue", "--json")
    assert code == 0 and {r["answer"] for r in json.loads(out)["rows"] if not r["error"]} <= {"red", "blue"}


def test_cli_folder_bad_input_is_a_message_and_a_non_zero_exit(tmp_path, capsys):
    code, _, err = cli(capsys, "folder", "caption", tmp_path / "nowhere", "--out", tmp_path / "r.csv")
    assert code == 2 and "was not found" in err and "Traceback" not in err
    assert not (tmp_path / "r.csv").exists()
    write_scenes(tmp_path / "p", n=1)
    code, _, err = cli(capsys, "folder", "caption", tmp_path / "p", "--out", tmp_path / "r.xlsx")
    assert code == 2 and ".csv or .json" in err
    code, _, err = cli(capsys, "folder", "classify", tmp_path / "p")
    assert code == 2 and "--head" in err
    (tmp_path / "bad").mkdir()
    corrupt_png(tmp_path / "bad" / "x.png")
    code, out, _ = cli(capsys, "folder", "rank-captions", tmp_path / "bad")
    assert code == 2 and "x.png: error:" in out  # every file failed: nothing came out


def test_cli_index_build_from_a_zip_keeps_its_captions(tmp_path, capsys):
    captions = write_scenes(tmp_path / "g", n=4)
    z = zip_folder(tmp_path / "g", tmp_path / "g.zip")
    index = tmp_path / "g.npz"
    code, out, _ = cli(capsys, "index", "build", z, "--out", index, "--cache-dir", tmp_path / "c", "--json")
    assert code == 0 and json.loads(out)["captioned"] == 4
    code, out, _ = cli(capsys, "search", index, "a large red circle", "-k", "2", "--json")
    hits = json.loads(out)["hits"]
    assert hits and all(h["caption"] == captions[h["label"]] for h in hits)
    code, out, _ = cli(capsys, "index", "build", z, "--out", index, "--cache-dir", tmp_path / "c")
    assert code == 0 and "4 with a caption from captions.json" in out
