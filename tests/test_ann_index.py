"""Approximate search for large indexes: the kind chosen by size, tuned on held-out
items, recorded in the file, and opened again by memory map with the same answers."""

import numpy as np
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingIndex, exact_topk
from mmdemo.index import ann as ann_mod
from mmdemo.index.store import LazyItems, _json_array


def clustered(n, d=32, seed=0, clusters=40):
    """Unit vectors in clusters, like real embeddings (uniform ones are the worst case)."""
    centres = np.random.default_rng(12345 + d).normal(size=(clusters, d))  # one mixture; seed draws from it
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(kind, n, d=32, seed=0, **kw):
    emb = clustered(n, d, seed)
    idx = EmbeddingIndex("model-a", d, exact_limit=0 if kind != "exact" else None,
                         hnsw_limit=n if kind == "hnsw" else 0, **kw)
    idx.add(emb, [{"name": f"item-{i}", "path": f"/photos/{i}.jpg"} for i in range(n)])
    return idx, emb


def recall(idx, emb, queries, k=10):
    found = [[h.score for h in row] for row in idx.search(queries, k=k)]
    return ann_mod.recall_at(np.array(found), exact_topk(emb, queries, k)[0])


def test_kind_follows_the_size_in_bytes():
    assert ann_mod.kind_for(10_000, 512) == "exact"
    assert ann_mod.kind_for(100_000, 512) == "hnsw"
    assert ann_mod.kind_for(1_000_000, 512) == "hnsw"
    assert ann_mod.kind_for(3_000_000, 512) == "ivfpq"
    assert ann_mod.kind_for(100_000, 128) == "exact"  # the tiny model's 128-d vectors are 4x smaller


@pytest.mark.parametrize("kind,n", [("hnsw", 3000), ("ivfpq", 5000)])
def test_approximate_kinds_find_the_true_neighbours_with_exact_scores(kind, n):
    idx, emb = make(kind, n)
    assert idx.kind == kind and idx.uses_faiss
    queries = clustered(200, seed=7)  # fresh draws: not indexed items
    assert recall(idx, emb, queries) >= 0.9
    for q, row in zip(queries[:5], idx.search(queries[:5], k=5)):
        # HNSW stores the vectors; IVF-PQ re-ranks its candidates exactly: either way a
        # result's score is its true cosine, best first.
        assert [h.score for h in row] == pytest.approx([float(emb[h.index] @ q) for h in row], abs=1e-5)
        assert all(a.score >= b.score for a, b in zip(row, row[1:]))
        assert row[0].item == {"name": f"item-{row[0].index}", "path": f"/photos/{row[0].index}.jpg"}


@pytest.mark.parametrize("kind,n", [("hnsw", 3000), ("ivfpq", 5000)])
def test_the_tuned_setting_and_its_held_out_recall_are_recorded(kind, n):
    idx, _ = make(kind, n)
    info = idx.info()
    assert info["kind"] == kind and info["items"] == n and info["modality"] == "image"
    assert info["recall_queries"] == min(ann_mod.TUNE_QUERIES, n // 10)
    assert info["recall_at_10"] >= ann_mod.TARGET_RECALL
    assert set(info["params"]) == ({"M", "efConstruction", "efSearch"} if kind == "hnsw"
                                   else {"nlist", "pq_bytes", "nprobe", "k_factor"})
    # The cheapest setting that reached the target was kept: every cheaper one fell short.
    tried = idx._record["tried"]
    assert tried[-1]["recall_at_10"] == info["recall_at_10"]
    assert all(t["recall_at_10"] < ann_mod.TARGET_RECALL for t in tried[:-1])
    settings = idx._ann.settings(10)
    assert [{k: t[k] for k in settings[0]} for t in tried] == settings[:len(tried)]


def test_an_unreachable_target_falls_back_to_exact_search_and_says_what_was_measured():
    idx, emb = make("hnsw", 2000, target_recall=1.01)
    info = idx.info()
    assert info["kind"] == "exact" and info["recall_at_10"] == 1.0 and idx._ann is None
    tried = info["fallback_from"]
    assert tried["kind"] == "hnsw" and tried["recall_at_10"] < 1.01
    assert tried["params"]["efSearch"] == ann_mod.HNSW_EF_SEARCH[-1]  # the most thorough setting was tried
    assert recall(idx, emb, clustered(20, seed=3)) == 1.0


def test_ivfpq_below_its_target_keeps_the_most_thorough_setting_and_records_its_recall():
    idx, _ = make("ivfpq", 5000, target_recall=1.01)
    info = idx.info()
    assert info["kind"] == "ivfpq" and info["recall_at_10"] < 1.01 and info["fallback_from"] is None
    assert idx._record["tried"][-1] == {**idx._ann.settings(10)[-1], "recall_at_10": info["recall_at_10"]}


def test_duplicates_count_as_found_whichever_copy_comes_back():
    """A collection with every photo saved 30 times: the recall recorded is about the
    neighbours' similarity, not which copy's number came back."""
    base = clustered(100)
    emb = np.repeat(base, 30, axis=0)
    idx = EmbeddingIndex("m", 32, exact_limit=0)
    idx.add(emb, [{"name": str(i)} for i in range(len(emb))])
    info = idx.info()
    assert info["kind"] == "hnsw" and info["recall_at_10"] >= ann_mod.TARGET_RECALL
    assert info["params"]["efSearch"] < ann_mod.HNSW_EF_SEARCH[-1]


def test_one_item_is_searched_exactly_whatever_the_limits():
    idx = EmbeddingIndex("m", 32, exact_limit=0, hnsw_limit=0)
    idx.add(clustered(1), [{"name": "only"}])
    assert idx.kind == "exact" and idx.search(clustered(1, seed=2), k=5)[0][0].item == {"name": "only"}


def test_small_indexes_stay_exact_with_recall_one():
    idx, emb = make("exact", 500)
    assert idx.kind == "exact" and not idx.uses_faiss
    assert idx.info()["recall_at_10"] == 1.0 and idx.info()["kind"] == "exact"
    assert recall(idx, emb, clustered(20, seed=3)) == 1.0


@pytest.mark.parametrize("kind,n", [("exact", 400), ("hnsw", 3000), ("ivfpq", 5000)])
def test_saved_index_opens_by_memory_map_with_the_same_answers(tmp_path, kind, n):
    idx, emb = make(kind, n, modality="audio")
    queries = clustered(30, seed=5)
    before = [[(h.index, round(h.score, 5)) for h in row] for row in idx.search(queries, k=10)]
    path = idx.save(tmp_path / "gallery.npz")
    opened = EmbeddingIndex.load(path)
    assert isinstance(opened.embeddings, np.memmap) and not opened.embeddings.flags.writeable
    assert isinstance(opened.items, LazyItems) and opened.items[7] == {"name": "item-7", "path": "/photos/7.jpg"}
    assert opened.items == idx.items and len(opened) == n and opened.modality == "audio"
    info = opened.info()
    assert {k: info[k] for k in ("kind", "params", "recall_at_10")} == \
        {k: idx.info()[k] for k in ("kind", "params", "recall_at_10")}
    assert info["file_bytes"] == path.stat().st_size
    after = [[(h.index, round(h.score, 5)) for h in row] for row in opened.search(queries, k=10)]
    assert after == before
    in_memory = EmbeddingIndex.load(path, mmap=False)
    assert isinstance(in_memory.items, list) and not isinstance(in_memory.embeddings, np.memmap)
    assert [[(h.index, round(h.score, 5)) for h in row] for row in in_memory.search(queries, k=10)] == before


@pytest.mark.parametrize("model_id", ["m", "mm", "mmm", "mmmm", "tiny-clip:930b4830136b"])
def test_memory_mapped_vectors_are_aligned_whatever_the_metadata_length(tmp_path, model_id):
    """Unaligned float32 rows make numpy's matrix product ~20x slower."""
    idx = EmbeddingIndex(model_id, 32)
    idx.add(clustered(50), [{"name": "é" * (i % 7)} for i in range(50)])
    opened = EmbeddingIndex.load(idx.save(tmp_path / "g.npz"))
    assert isinstance(opened.embeddings, np.memmap) and opened.embeddings.flags.aligned
    assert opened.embeddings.ctypes.data % 64 == 0


def test_a_search_structure_that_does_not_match_its_vectors_is_refused(tmp_path):
    big, _ = make("hnsw", 3000)
    small, _ = make("hnsw", 2000)
    big.save(tmp_path / "big.npz")
    small.save(tmp_path / "small.npz")
    # small's vectors with big's graph: a search would look up rows that are not there.
    import zipfile

    with zipfile.ZipFile(tmp_path / "big.npz") as zb, zipfile.ZipFile(tmp_path / "small.npz") as zs, \
            zipfile.ZipFile(tmp_path / "mixed.npz", "w") as out:
        for name in zs.namelist():
            out.writestr(name, (zb if name == "ann.faiss" else zs).read(name))
    with pytest.raises(MMDemoError, match="damaged") as err:
        EmbeddingIndex.load(tmp_path / "mixed.npz")
    assert err.value.code == "index_invalid"


def test_saving_over_an_open_index_never_changes_what_readers_see(tmp_path):
    idx, emb = make("hnsw", 2000)
    path = idx.save(tmp_path / "g.npz")
    reader = EmbeddingIndex.load(path)
    q = clustered(5, seed=9)
    seen = [[h.index for h in row] for row in reader.search(q, k=5)]
    grown = EmbeddingIndex.load(path)
    grown.add(clustered(1000, seed=4), [{"name": f"new-{i}"} for i in range(1000)])
    assert grown.info()["items"] == 3000
    grown.save(path)  # a new file swapped in: the reader's memory map still holds the old one
    assert [[h.index for h in row] for row in reader.search(q, k=5)] == seen
    assert reader.items[0] == {"name": "item-0", "path": "/photos/0.jpg"}
    assert len(EmbeddingIndex.load(path)) == 3000 and [p.name for p in tmp_path.iterdir()] == ["g.npz"]


def test_damaged_index_files_are_explained(tmp_path):
    idx, _ = make("hnsw", 2000)
    path = idx.save(tmp_path / "g.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MMDemoError, match="not an mmdemo index, or it is damaged") as err:
        EmbeddingIndex.load(tmp_path / "cut.npz")
    assert err.value.code == "index_invalid"
    # The search structure damaged inside an otherwise whole file.
    start = data.index(b"IxM")  # the id map's header, where faiss's index begins
    broken = data[:start] + b"\0" * 64 + data[start + 64:]
    (tmp_path / "broken.npz").write_bytes(broken)
    with pytest.raises(MMDemoError, match="damaged"):
        EmbeddingIndex.load(tmp_path / "broken.npz")


def test_indexes_saved_by_the_previous_version_still_open(tmp_path):
    emb = clustered(20)
    meta = {"format": "mmdemo-index-1", "model_id": "m", "dim": 32, "items": [{"name": f"n{i}"} for i in range(20)]}
    np.savez(tmp_path / "old.npz", embeddings=emb, meta=_json_array(meta))
    old = EmbeddingIndex.load(tmp_path / "old.npz")
    assert len(old) == 20 and old.modality == "image" and old.info()["kind"] == "exact"
    big = clustered(40_000)  # above the exact limit, but an old file is never re-tuned on opening
    meta = {**meta, "items": [{"name": str(i)} for i in range(40_000)]}
    np.savez(tmp_path / "old-big.npz", embeddings=big, meta=_json_array(meta))
    assert EmbeddingIndex.load(tmp_path / "old-big.npz").info()["kind"] == "exact"
    assert old.search(emb[3], k=1)[0][0].item == {"name": "n3"}


def test_exact_topk_in_chunks_matches_a_full_sort_and_leaves_out_excluded_rows():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(70_000, 8)).astype(np.float32)  # more than one scanning chunk
    q = rng.normal(size=(3, 8)).astype(np.float32)
    scores, idx = exact_topk(emb, q, 10)
    np.testing.assert_array_equal(idx, np.argsort(-(q @ emb.T), axis=1, kind="stable")[:, :10])
    exclude = np.sort(idx[:, 0])
    _, idx2 = exact_topk(emb, q, 10, exclude=exclude)
    assert not set(idx2.ravel()) & set(exclude.tolist())
