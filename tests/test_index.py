import numpy as np
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingCache, EmbeddingIndex, exact_topk


def unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_finds_the_item_itself_first():
    emb = unit(200)
    idx = EmbeddingIndex("m", 16)
    idx.add(emb, [{"name": f"img{i}"} for i in range(200)])
    hits = idx.search(emb[[7, 42]], k=5)
    assert [h[0].item["name"] for h in hits] == ["img7", "img42"]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert all(a.score >= b.score for a, b in zip(hits[0], hits[0][1:]))


def test_topk_matches_a_full_sort():
    emb, q = unit(500), unit(3, seed=1)
    scores, idx = exact_topk(emb, q, 10)
    ref = np.argsort(-(q @ emb.T), axis=1)[:, :10]
    np.testing.assert_array_equal(idx, ref)


def test_faiss_path_for_large_indexes_has_high_recall():
    emb = unit(4000, d=32)
    idx = EmbeddingIndex("m", 32, exact_limit=1000)
    idx.add(emb, [{"name": str(i)} for i in range(4000)])
    assert idx.uses_faiss
    q = emb[:50] + 0.05 * unit(50, d=32, seed=3)
    approx = [[h.index for h in row] for row in idx.search(q, k=10)]
    _, exact = exact_topk(emb, q.astype(np.float32), 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.9


def test_save_load_round_trip_and_atomicity(tmp_path, monkeypatch):
    idx = EmbeddingIndex("model-a", 16)
    idx.add(unit(10), [{"name": f"n{i}", "path": f"/x/{i}.png"} for i in range(10)])
    path = idx.save(tmp_path / "gallery.npz")
    back = EmbeddingIndex.load(path)
    assert back.model_id == "model-a" and back.items == idx.items
    np.testing.assert_array_equal(back.embeddings, idx.embeddings)
    # A crash in the middle of the next save leaves the previous index intact.
    idx.add(unit(5, seed=9), [{"name": f"m{i}"} for i in range(5)])
    real_write = np.lib.format.write_array

    def disk_full_at_embeddings(f, arr, **kw):  # the meta member is written, then the disk fills
        if arr.dtype == np.float32:
            raise OSError("disk full")
        real_write(f, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full_at_embeddings)
    with pytest.raises(OSError):
        idx.save(path)
    assert len(EmbeddingIndex.load(path)) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.npz"]


def test_bad_index_files_are_explained(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an index")
    with pytest.raises(MMDemoError, match="not an mmdemo index"):
        EmbeddingIndex.load(bad)
    with pytest.raises(MMDemoError, match="not found"):
        EmbeddingIndex.load(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", embeddings=np.zeros((2, 2)), meta=np.zeros(3, np.uint8))
    with pytest.raises(MMDemoError, match="not an mmdemo index"):
        EmbeddingIndex.load(tmp_path / "other.npz")


def test_wrong_dimension_query_and_empty_index_are_explained():
    idx = EmbeddingIndex("m", 16)
    with pytest.raises(MMDemoError, match="empty"):
        idx.search(unit(1))
    idx.add(unit(3), [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    with pytest.raises(MMDemoError, match="Rebuild the index"):
        idx.search(unit(1, d=8))


def test_cache_encodes_only_new_content(tmp_path):
    calls = []

    def compute(missing):
        calls.append(list(missing))
        return unit(len(missing), seed=len(calls))

    cache = EmbeddingCache(tmp_path, "model-a")
    first, n1 = cache.get_or_compute(["h1", "h2"], compute)
    again, n2 = EmbeddingCache(tmp_path, "model-a").get_or_compute(["h2", "h1", "h3"], compute)
    assert (n1, n2) == (2, 1) and calls == [[0, 1], [2]]
    np.testing.assert_array_equal(again[1], first[0])
    _, n3 = EmbeddingCache(tmp_path, "model-b").get_or_compute(["h1"], compute)
    assert n3 == 1  # another model never reuses these embeddings
