"""Pictures of the embedding space: an images x texts similarity heatmap, and a
gallery's 2-D map (PCA) with the query placed on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.scores import softmax
from mmdemo.tasks.gallery_files import skipped_notice
from mmdemo.tasks.image.gallery import ImageGallery, check_model
from mmdemo.tasks.image.inputs import as_source, load, parse_texts, read_query, text_notices

MAX_HEATMAP_IMAGES = 16
_MAP_NEIGHBOURS = 3  # a text query sits among this many of its best matches on the map
# A larger gallery (a saved index of millions) is mapped from a seeded sample of this many
# images, plus a text query's best matches: never a pass over every embedding.
MAP_MAX_POINTS = 2000
_MAP_KEPT_HITS = 24  # the most results the Image tab marks on the map
_MAP_SEED = 0


@dataclass
class Heatmap:
    images: list[str]
    texts: list[str]
    similarity: np.ndarray  # [n_images, n_texts] cosine similarity
    notices: list[str] = field(default_factory=list)


@dataclass
class EmbeddingMap:
    points: np.ndarray  # [N, 2], the gallery in its first two principal components
    labels: list[str]
    query_point: np.ndarray | None  # [2]
    query_label: str
    explained_variance: list[float]  # share of the gallery's variance along each axis
    captions: list[str] = field(default_factory=list)  # each point's caption
    total: int = 0  # images in the gallery: more than len(points) when the map is of a sample

    @property
    def sampled(self) -> bool:
        return self.total > len(self.labels)


def _about(notice: str, name: str) -> Notice:
    """``notice`` with the image it is about as its subject, so a caller can pick the
    notices about some of the images without reading their text."""
    if isinstance(notice, Notice):
        if notice.subject is None:
            notice.subject = name
        return notice
    return Notice("image_notice", notice, subject=name)


def similarity_heatmap(sources: Sequence, texts: str | Sequence[str], clip) -> Heatmap:
    """Cosine similarity of every image to every text; unreadable images are skipped with a notice."""
    if sources is None or isinstance(sources, (str, Path, bytes)) or not isinstance(sources, Sequence):
        sources = [] if sources is None else [sources]
    sources = [s for s in sources if s is not None]
    if not sources:
        raise MMDemoError("heatmap_no_images", "Add at least one image for the heatmap.")
    if len(sources) > MAX_HEATMAP_IMAGES:
        raise MMDemoError("heatmap_too_many_images",
                          f"Too many images for the heatmap: {len(sources)} given, at most {MAX_HEATMAP_IMAGES} "
                          "are allowed. Remove some and try again.")
    items, notices = parse_texts(texts, "texts")
    images, names, skipped = [], [], []
    for n, src in enumerate(sources):
        try:
            loaded = load(src, None if isinstance(as_source(src), (str, Path)) else f"image {n + 1}")
        except MMDemoError as exc:
            skipped.append(str(exc))
            continue
        notices.extend(_about(notice, loaded.name) for notice in loaded.notices)
        images.append(loaded.image)
        names.append(loaded.name)
    if not images:
        raise MMDemoError("heatmap_unreadable", "None of the images could be read. " + skipped[0])
    if skipped:
        notices.append(skipped_notice(skipped, "image(s)", ellipsis=False))
    notices += text_notices(clip, items, "texts")
    sim = np.asarray(clip.encode_images(images), np.float32) @ np.asarray(clip.encode_texts(items), np.float32).T
    return Heatmap(names, items, sim, notices)


def _map_rows(gallery: ImageGallery, query: np.ndarray | None, max_points: int) -> np.ndarray | None:
    """The rows a map of a large gallery shows (sorted: a memory map reads them in file
    order): a seeded sample, plus the text query's best matches so its results are on it."""
    n = len(gallery.index)
    if n <= max_points:
        return None
    kept = np.zeros(0, np.int64)
    if query is not None:
        kept = np.array([h.index for h in gallery.index.search(query[None], k=min(_MAP_KEPT_HITS, n))[0]], np.int64)
    sample = np.random.default_rng(_MAP_SEED).choice(n, size=max(1, max_points - len(kept)), replace=False)
    return np.unique(np.concatenate([sample, kept]))


def embedding_map(gallery: ImageGallery, clip, *, query_text: str | None = None, query_image: Any = None,
                  max_points: int = MAP_MAX_POINTS) -> EmbeddingMap:
    """The gallery in 2-D (PCA of its image embeddings, via SVD) with the query placed on it.

    An image query is projected like the gallery. A text query has no good place of
    its own among image embeddings: texts and images occupy separate cones of
    CLIP's space (the "modality gap", Liang et al. 2022), so its raw projection
    lands off to one side, near no image in particular. It is placed where its
    search results are instead: the centre of its top 3 images, weighted by the
    model's match probabilities. A text query wins when both are given.

    A gallery of more than ``max_points`` images is mapped from a seeded sample of them
    (plus the text query's best matches); ``EmbeddingMap.total`` says of how many.
    """
    check_model(gallery, clip)
    text = query_text.strip() if isinstance(query_text, str) else ""
    query_label, query_emb = "", None
    if text:
        query_label, _ = read_query(text, clip)
        query_emb = np.asarray(clip.encode_texts([query_label]), np.float32)[0]
    rows = _map_rows(gallery, query_emb, int(max_points))
    items = gallery.index.items
    picked = range(len(items)) if rows is None else [int(i) for i in rows]
    emb = np.asarray(gallery.index.embeddings if rows is None else gallery.index.embeddings[rows], np.float64)
    shown = [items[i] for i in picked]
    labels = [str(item.get("name", i)) for i, item in zip(picked, shown)]
    captions = [str(item.get("caption") or "") for item in shown]
    mean = emb.mean(axis=0)
    centred = emb - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = np.zeros((2, emb.shape[1]))
    comps[: min(2, len(vt))] = vt[:2]
    var = s ** 2
    total = float(var.sum())
    explained = [float(var[i] / total) if total > 0 and i < len(var) else 0.0 for i in range(2)]
    points = centred @ comps.T

    query_point = None
    if query_emb is not None:
        sims = emb @ query_emb.astype(np.float64)
        top = np.argsort(-sims, kind="stable")[:_MAP_NEIGHBOURS]
        w = softmax(float(clip.logit_scale) * sims[top])
        query_point = w @ points[top]
    elif query_image is not None and not (isinstance(query_image, str) and not query_image.strip()):
        loaded = load(query_image)
        query_label = loaded.name
        query_point = (np.asarray(clip.encode_images([loaded.image]), np.float64)[0] - mean) @ comps.T
    return EmbeddingMap(points.astype(np.float32), labels,
                        None if query_point is None else query_point.astype(np.float32), query_label, explained,
                        captions, len(gallery.index))
