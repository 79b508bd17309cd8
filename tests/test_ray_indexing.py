"""`index build --engine ray`: a gallery indexed on Ray Data (one local Ray per module, 2 CPUs)
must give the index the in-process path gives, resume from the shards it wrote, and read
folders, lists of paths and Parquet tables of URIs.

Each run on Ray starts a pool of actors that load the tiny CLIP (seconds here): the tests
share a few runs through module fixtures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mmdemo.cli import main
from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingIndex
from mmdemo.tasks.index_sources import list_sources
from mmdemo.tasks.ray_indexing import EncoderSettings, _pool, build_index_ray
from tests.helpers.folders import corrupt_png, write_scenes

REPO = Path(__file__).resolve().parent.parent
N_IMAGES = 300
SHARD = 64


@pytest.fixture(scope="module")
def ray_cluster():
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 1024 * 1024,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clip():
    from mmdemo.registry import registry_from_settings
    from mmdemo.settings import Settings

    return registry_from_settings(Settings(device="cpu")).for_slot("clip")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """300 generated scenes with their captions.json, and one broken file among them."""
    folder = tmp_path_factory.mktemp("big") / "gallery"
    write_scenes(folder, n=N_IMAGES)
    corrupt_png(folder / "150-broken.png")  # in the middle: a shard with a hole
    return folder


@pytest.fixture(scope="module")
def built(ray_cluster, gallery):
    out = gallery.parent / "gallery.npz"
    report = build_index_ray([gallery], out, settings=EncoderSettings(device="cpu"), workers=2, shard_size=SHARD)
    return out, report


def _same_index(path: Path, reference: EmbeddingIndex) -> None:
    got = EmbeddingIndex.load(path)
    assert got.model_id == reference.model_id
    assert list(got.items) == list(reference.items)
    np.testing.assert_allclose(np.asarray(got.embeddings), reference.embeddings, atol=1e-5)


def test_the_index_equals_the_in_process_one(built, gallery, clip):
    from mmdemo.tasks.image import build_gallery

    out, report = built
    local = build_gallery([gallery], clip, max_files=1000)
    _same_index(out, local.index)
    assert report["images"] == len(local) == N_IMAGES
    assert report["captioned"] == N_IMAGES  # captions.json found, as in-process
    assert (report["engine"], report["workers"], report["shards"], report["shards_skipped"]) == ("ray", 2, 5, 0)
    assert report["encoded"] == N_IMAGES and report["images_per_s"] > 0
    # The broken file: one notice, word for word what the in-process path says, not a crash.
    assert report["notices"] == local.notices and len(report["notices"]) == 1
    assert "150-broken.png" in report["notices"][0] and "Skipped 1 unreadable" in report["notices"][0]


def test_shards_are_parquet_with_one_row_per_listed_file(built):
    import pyarrow.parquet as pq

    out, report = built
    files = sorted(Path(report["shards_dir"]).glob("shard-*.parquet"))
    assert [f.name[:11] for f in files] == [f"shard-{i:05d}" for i in range(5)]
    table = pq.read_table(files[2])  # ids 128..191: the broken file is id 150
    assert table.column_names == ["id", "uri", "name", "caption", "embedding", "model_id", "error", "notices"]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == list(range(128, 192))
    broken = next(r for r in rows if r["name"] == "150-broken.png")
    assert broken["embedding"] == [] and "not a readable image" in broken["error"]
    assert all(len(r["embedding"]) == 128 and not r["error"] for r in rows if r is not broken)
    assert {r["model_id"] for r in rows} == {report["model_id"]}


def test_a_rerun_skips_done_shards_and_redoes_a_deleted_one(built, gallery):
    out, first = built
    loaded = EmbeddingIndex.load(out)
    reference = EmbeddingIndex(loaded.model_id, loaded.dim, np.array(loaded.embeddings), list(loaded.items))
    settings = EncoderSettings(device="cpu")
    again = build_index_ray([gallery], out, settings=settings, workers=2, shard_size=SHARD)  # the same command
    assert (again["shards_skipped"], again["encoded"], again["workers"]) == (5, 0, 0)  # Ray not even started
    assert again["cached"] == N_IMAGES
    _same_index(out, reference)

    shard = next(Path(first["shards_dir"]).glob("shard-00003-*.parquet"))
    shard.unlink()
    redone = build_index_ray([gallery], out, settings=settings, workers=2, shard_size=SHARD)
    assert (redone["shards_skipped"], redone["encoded"], redone["workers"]) == (4, SHARD, 1)
    assert shard.exists()
    _same_index(out, reference)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small") / "pics"
    write_scenes(folder, n=20, seed=3)
    return folder


def test_a_parquet_table_and_a_list_of_paths_give_the_listed_images_in_order(ray_cluster, small, clip, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmdemo.tasks.image import build_gallery

    files = sorted(small.glob("*.png"))
    table_files, list_files = files[10:][::-1], files[2:7]
    uris = [p.as_uri() if i == 0 else str(p) for i, p in enumerate(table_files)]  # a file:// URI too
    pq.write_table(pa.table({"uri": uris, "label": ["x"] * len(uris)}), tmp_path / "table.parquet")
    lines = ["# images to index", "", *[f"../{small.name}/{p.name}" for p in list_files]]
    listing = small.parent / "lists" / "some.txt"  # relative paths: relative to the list
    listing.parent.mkdir()
    listing.write_text("\n".join(lines) + "\n")

    report = build_index_ray([tmp_path / "table.parquet", listing], tmp_path / "t.npz",
                             settings=EncoderSettings(device="cpu"), workers=1)
    listed = table_files + list_files
    local = build_gallery(listed, clip, max_files=100)  # the same files handed over one by one
    _same_index(tmp_path / "t.npz", local.index)
    assert [it["name"] for it in EmbeddingIndex.load(tmp_path / "t.npz").items] == [p.name for p in listed]
    assert report["captioned"] == len(listed)  # captions.json beside the files, as in-process


def test_a_changed_file_is_encoded_again_and_its_old_shard_removed(ray_cluster, small, tmp_path):
    folder = tmp_path / "pics"
    shutil.copytree(small, folder)
    settings = EncoderSettings(device="cpu")
    build_index_ray([folder], tmp_path / "a.npz", settings=settings, workers=1, shard_size=8)
    before = np.array(EmbeddingIndex.load(tmp_path / "a.npz").embeddings)
    changed = sorted(folder.glob("*.png"))[9]  # shard 1 of 0..2
    Image.new("RGB", (64, 64), "white").save(changed)
    report = build_index_ray([folder], tmp_path / "a.npz", settings=settings, workers=1, shard_size=8)
    after = EmbeddingIndex.load(tmp_path / "a.npz")
    assert (report["shards"], report["shards_skipped"], report["shards_removed"], report["encoded"]) == (3, 2, 1, 8)
    assert len(list((tmp_path / "a-shards").glob("*.parquet"))) == 3
    moved = [i for i in range(len(after)) if not np.allclose(after.embeddings[i], before[i], atol=1e-5)]
    assert moved == [9]


def test_a_worker_that_cannot_load_the_model_says_why(ray_cluster, small, tmp_path):
    tiny = REPO / "assets" / "models" / "tiny"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.gone-clip]\nkind = "clip"\nconfig = "{tiny / "mmdemo-tiny-clip.json"}"\n'
                       f'weights = "{tmp_path / "nope.safetensors"}"\ntokenizer = "{tiny / "tokenizer.json"}"\n'
                       '[profiles.gone]\nclip = "gone-clip"\n')
    with pytest.raises(MMDemoError) as err:
        build_index_ray([small], tmp_path / "x.npz", settings=EncoderSettings("gone", "cpu", str(catalog)), workers=1)
    assert err.value.code == "weights_not_found" and "nope.safetensors" in str(err.value)
    assert not (tmp_path / "x.npz").exists()


def test_nothing_readable_is_an_error_not_an_empty_index(ray_cluster, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        corrupt_png(folder / name)
    with pytest.raises(MMDemoError) as err:
        build_index_ray([folder], tmp_path / "x.npz", settings=EncoderSettings(device="cpu"), workers=1)
    assert err.value.code == "gallery_unreadable" and "a.png" in str(err.value)


def test_a_shard_reads_remote_uris_through_pyarrow_and_records_what_failed(small, clip, tmp_path, monkeypatch):
    import pyarrow.fs
    import pyarrow.parquet as pq

    from mmdemo.tasks.index_shards import encode_shard

    local = pyarrow.fs.LocalFileSystem()
    # A bucket on this disk: s3://bucket/<name> is <small>/<name>.
    monkeypatch.setattr(pyarrow.fs, "FileSystem", SimpleNamespace(
        from_uri=lambda uri: (local, str(small / uri.rsplit("/", 1)[1]))))
    names = ["000-red-circle.png", "001-green-circle.png", "gone.png"]
    desc = {"shard": 0, "file": str(tmp_path / "s.parquet"), "first_id": 7, "model_id": clip.model_id,
            "uris": [str(small / names[0]), *[f"s3://bucket/{n}" for n in names[1:]]], "names": names,
            "captions": ["", "", ""]}
    assert encode_shard(clip, desc)["images"] == 2
    rows = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert [r["id"] for r in rows] == [7, 8, 9]
    assert [len(r["embedding"]) for r in rows] == [128, 128, 0]
    assert "gone.png could not be read" in rows[2]["error"]
    direct = clip.encode_images([Image.open(small / n).convert("RGB") for n in names[:2]])
    np.testing.assert_allclose([r["embedding"] for r in rows[:2]], direct, atol=1e-5)


def test_a_uri_no_file_system_can_read_is_one_failed_row_not_a_failed_run(small, clip, tmp_path):
    import pyarrow.parquet as pq

    from mmdemo.tasks.index_shards import encode_shard

    desc = {"shard": 0, "file": str(tmp_path / "s.parquet"), "first_id": 0, "model_id": clip.model_id,
            "uris": ["https://example.invalid/x.jpg", str(small / "000-red-circle.png")],
            "names": ["x.jpg", "000-red-circle.png"], "captions": ["", ""]}
    assert encode_shard(clip, desc)["images"] == 1
    rows = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert "x.jpg could not be read" in rows[0]["error"] and rows[1]["error"] == ""


def test_bad_lists_and_tables_get_clear_messages(small, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"file": [str(small / "000-red-circle.png")]}), tmp_path / "nouri.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "missing.txt").write_text(str(small / "no-such.png") + "\n")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    cases = {"nouri.parquet": ("table_no_uri_column", "no column named 'uri' or 'path'"),
             "fake.parquet": ("table_unreadable", "not a readable Parquet table"),
             "missing.txt": ("no_files_found", "no-such.png"),
             "empty.txt": ("no_files_found", "No images found")}
    for name, (code, words) in cases.items():
        with pytest.raises(MMDemoError) as err:
            list_sources([tmp_path / name])
        assert err.value.code == code and words in str(err.value), name
    with pytest.raises(MMDemoError, match="at most 5"):
        list_sources([small], max_files=5)
    with pytest.raises(MMDemoError, match="at least 1"):
        build_index_ray([small], tmp_path / "x.npz", workers=0)
    # One stale line in a long list is skipped, and said; it does not stop the run.
    (tmp_path / "stale.txt").write_text(f"{small / '000-red-circle.png'}\n{small / 'no-such.png'}\n")
    listed, notices = list_sources([tmp_path / "stale.txt"])
    assert [s.name for s in listed] == ["000-red-circle.png"]
    assert len(notices) == 1 and "1 path(s) in the lists given were not found" in str(notices[0])
    listed, _ = list_sources([small, "s3://bucket/more/x.png"])  # a remote URI is kept for the workers
    assert len(listed) == 21 and (listed[-1].uri, listed[-1].name, listed[-1].remote) == (
        "s3://bucket/more/x.png", "x.png", True)
    monkeypatch.setattr("mmdemo.media.files._MAX_SCANNED", 5)  # a folder too large to walk
    with pytest.raises(MMDemoError, match="a Parquet table"):
        list_sources([small])


def test_without_ray_the_message_says_what_to_install(small, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    with pytest.raises(MMDemoError, match=r"pip install -r requirements-ray\.txt"):
        build_index_ray([small], tmp_path / "x.npz")
    assert main(["index", "build", str(small), "--out", str(tmp_path / "x.npz"), "--engine", "ray"]) == 2
    assert "pip install -r requirements-ray.txt" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_ray_indexes_images_only(small, tmp_path, capsys):
    assert main(["index", "build", str(small), "--out", str(tmp_path / "x.npz"), "--engine", "ray",
                 "--modality", "audio"]) == 2
    assert "--engine ray indexes images only" in capsys.readouterr().err


def test_actors_take_the_gpus_when_the_cluster_has_them():
    def fake(cpu, gpu=0.0, nodes=1):
        return SimpleNamespace(cluster_resources=lambda: {"CPU": cpu, "GPU": gpu},
                               nodes=lambda: [{"Alive": True}] * nodes)

    assert _pool(fake(16, 2), None, "auto", 100) == (2, {"num_gpus": 1.0, "num_cpus": 1})
    assert _pool(fake(16, 2), 3, "auto", 100) == (3, {"num_gpus": 0.5, "num_cpus": 1})  # 2 share a GPU
    assert _pool(fake(16, 2), None, "cpu", 100) == (16, {"num_cpus": 1.0})  # --device cpu: no GPU actors
    assert _pool(fake(2), 1, "auto", 100) == (1, {"num_cpus": 2.0})  # one actor gets the machine's CPUs
    assert _pool(fake(2), None, "auto", 1) == (1, {"num_cpus": 2.0})  # never more actors than shards
    assert _pool(fake(32, nodes=4), 5, "auto", 100) == (5, {"num_cpus": 1})  # several nodes: 1 CPU each


def test_cli_builds_on_ray_then_search_finds_the_red_images(small, tmp_path):
    out = tmp_path / "cli.npz"
    run = subprocess.run([sys.executable, "-m", "mmdemo", "index", "build", str(small), "--out", str(out),
                          "--engine", "ray", "--workers", "1", "--device", "cpu", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert (report["images"], report["engine"], report["shards"]) == (20, "ray", 1)
    assert Path(report["shards_dir"]) == tmp_path / "cli-shards"
    search = subprocess.run([sys.executable, "-m", "mmdemo", "search", str(out), "a red star", "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert search.returncode == 0, search.stderr[-2000:]
    hits = json.loads(search.stdout)["hits"]
    assert len(hits) == 5 and "red" in hits[0]["label"]
