"""Saved indexes (``python -m mmdemo index build``) that the app and the CLI search.

A saved index may hold millions of items: it is opened by memory map
(``EmbeddingIndex.load(path, mmap=True)``), so neither its embeddings nor its items
are read whole, and everything here touches only what a search returns. Its recorded
modality routes it: an image index serves the Image tab, an audio index the Audio tab.

An audio index holds one item per window the model heard (a sound of 10 s is five
windows), each with its sound's number (``clip``) and the window's ``start``/``end``; a
search by text returns one hit per sound, its best window, as the in-memory gallery does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.index import EmbeddingIndex
from mmdemo.scores import result_count

KINDS = {"exact": "exact search", "hnsw": "HNSW", "ivfpq": "IVF-PQ"}
WHAT = {"image": "images", "audio": "sound windows"}
# A sound search first asks the index for k x this many windows (a 30 s sound is 14 windows
# at most, most sounds far fewer), then 4x as many while fewer than k sounds came back.
WINDOWS_PER_SOUND = 8
_WIDEN = 4


@dataclass
class SavedIndex:
    """An index file opened by memory map; ``info`` is what it recorded about itself."""

    path: Path
    index: EmbeddingIndex
    info: dict
    notices: list[str] = field(default_factory=list)  # what a search of it tells besides its hits (none)

    @property
    def model_id(self) -> str:
        return self.index.model_id

    @property
    def modality(self) -> str:
        return self.index.modality

    def __len__(self) -> int:
        return len(self.index)


def open_index(path: str | Path) -> SavedIndex:
    """Open a saved index by memory map; a missing or foreign file is an ``MMDemoError``."""
    path = Path(path)
    index = EmbeddingIndex.load(path, mmap=True)  # index_not_found / index_invalid say what was wrong
    if len(index) == 0:
        raise MMDemoError("index_empty", f"{path.name} holds no items: build it again from some files.")
    return SavedIndex(path, index, index.info())


def open_gallery_indexes(paths: Iterable[str | Path]) -> dict[str, SavedIndex]:
    """The saved indexes given by ``--gallery-index``, by modality (at most one of each)."""
    opened: dict[str, SavedIndex] = {}
    for path in paths:
        saved = open_index(path)
        if saved.modality in opened:
            first = opened[saved.modality].path
            raise MMDemoError("gallery_index_duplicate",
                              f"Two saved {saved.modality} indexes were given ({first} and {saved.path}); the "
                              f"{saved.modality.capitalize()} tab searches one. Give one --gallery-index per kind "
                              "(image, audio).")
        opened[saved.modality] = saved
    return opened


def _params(params: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def summary(saved: SavedIndex) -> str:
    """One line on what a search of ``saved`` goes through: size, kind, measured recall.

    E.g. "gallery.npz: 1,000,000 images · HNSW (M 32, efSearch 64) · recall@10 0.962 on
    500 held-out queries"."""
    return index_line(saved.path.name, saved.index, saved.info)


def index_line(name: str, index: EmbeddingIndex, info: dict) -> str:
    """``summary``'s line for any index (``info`` is its ``info()``), saved or about to be."""
    kind = info.get("kind", "exact")
    head = f"{name}: {int(info.get('items', len(index))):,} {WHAT.get(index.modality, 'items')}"
    if index.modality == "audio" and len(index):
        # Windows come sound by sound, numbered in order: the last one's number counts the sounds.
        head = f"{name}: {int(index.items[-1].get('clip', 0)) + 1:,} sounds ({len(index):,} windows)"
    if kind == "exact":
        fell = info.get("fallback_from")
        why = "" if not fell else (
            f"; {KINDS.get(fell['kind'], fell['kind'])} reached only recall@10 {fell['recall_at_10']:.3f} "
            f"({_params(fell['params'])}), below the target {fell['target_recall']:g}")
        return f"{head} · exact search (every one compared, recall@10 1.000{why})"
    params = info.get("params") or {}
    name = KINDS.get(kind, kind) + (f" ({_params(params)})" if params else "")
    recall = info.get("recall_at_10")
    measured = "" if recall is None else (f" · recall@10 {float(recall):.3f} on "
                                          f"{int(info.get('recall_queries') or 0):,} held-out queries")
    return f"{head} · {name}{measured}"


def check_index_model(saved: SavedIndex, model) -> None:
    """Embeddings from two models can't be compared: refuse, and say how to rebuild."""
    if saved.model_id != model.model_id:
        raise MMDemoError("index_model_mismatch",
                          f"{saved.path.name} was built with the model {saved.model_id!r}, but the current "
                          f"{saved.modality} model is {model.model_id!r}: embeddings from different models can't "
                          "be compared. Rebuild it: index it again with the current model, `python -m mmdemo index "
                          f"build --modality {saved.modality} FILES --out {saved.path.name}` with the same --profile.")


def missing_files_notice(names: Sequence[str], what: str) -> Notice | None:
    """One notice for results whose files are gone since the index was built (shown without them)."""
    if not names:
        return None
    shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    return Notice("index_files_missing",
                  f"{len(names)} result(s) have no {what}: their files are no longer where the index found them "
                  f"({shown}). Put the files back, or index them again.")


# --------------------------------------------------------------------------- sounds


def sound_index(gallery) -> EmbeddingIndex:
    """An audio ``EmbeddingIndex`` of an ``AudioGallery`` (``tasks.audio.build_gallery``):
    one item per window, {name, path, duration, caption, clip, start, end}."""
    emb = np.asarray(gallery.embeddings, np.float32)
    items = []
    for owner, (start, end) in zip(gallery.window_owner, gallery.window_seconds):
        sound = gallery.items[int(owner)]
        items.append({"name": sound["name"], "path": sound["path"], "duration": sound["duration"],
                      "caption": sound.get("caption", ""), "clip": int(owner),
                      "start": round(float(start), 3), "end": round(float(end), 3)})
    index = EmbeddingIndex(model_id=gallery.model_id, dim=int(emb.shape[1]), modality="audio")
    index.add(emb, items)
    return index


def _sound_of(hit) -> object:
    item = hit.item
    return item.get("clip", item.get("path", hit.index))


def search_sounds(saved: SavedIndex, query: np.ndarray, k: int) -> list[dict]:
    """The ``k`` sounds whose best window is closest to the text embedding ``query``:
    [{label, score, caption, path, duration, start, end}], best first.

    The index is asked for windows (``index.search``, its own kind: no scan here), more
    of them while they belong to fewer than ``k`` sounds, until it has none left."""
    k, total = result_count(k), len(saved.index)
    asked = min(total, k * WINDOWS_PER_SOUND)
    q = np.asarray(query, np.float32).reshape(1, -1)
    while True:
        best: dict = {}
        for hit in saved.index.search(q, k=asked)[0]:
            key = _sound_of(hit)
            if key not in best or hit.score > best[key].score:
                best[key] = hit
        if len(best) >= k or asked >= total:
            break
        asked = min(total, asked * _WIDEN)
    hits = sorted(best.values(), key=lambda h: -h.score)[:k]
    return [{"label": h.item.get("name", str(h.index)), "score": float(h.score), "caption": h.item.get("caption", ""),
             "path": h.item.get("path"), "duration": h.item.get("duration"), "start": h.item.get("start", 0.0),
             "end": h.item.get("end", h.item.get("duration"))} for h in hits]
