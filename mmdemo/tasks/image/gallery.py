"""Search by embedding: a gallery of images indexed by one CLIP model, searched by
text, and a list of texts searched by an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.hashing import file_hash
from mmdemo.index import EmbeddingCache, EmbeddingIndex
from mmdemo.media import IMAGE_SUFFIXES, load_image
from mmdemo.tasks.gallery_files import gallery_files, skipped_notice
from mmdemo.tasks.saved_index import SavedIndex, check_index_model
from mmdemo.tasks.domain_notices import image_notice
from mmdemo.scores import result_count
from mmdemo.tasks.image.inputs import as_source, load, parse_texts, read_query, text_notices
from mmdemo.toyworld.galleries import example_gallery

MAX_GALLERY_FILES = 500

# Images decoded but not yet encoded are held at most this many at a time, and at
# most this many pixels in all: a gallery of 500 large photos must not sit in memory.
_ENCODE_BATCH = 32
_BATCH_PIXELS = 64_000_000


@dataclass
class ImageGallery:
    """Images embedded by one CLIP model; ``index.items`` are {name, path, caption}."""

    model_id: str
    index: EmbeddingIndex
    notices: list[str] = field(default_factory=list)
    encoded: int = 0  # images actually run through the encoder (the rest came from the cache)
    saved: SavedIndex | None = None  # the saved index file it is, when opened from one (memory-mapped)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class SearchResult:
    hits: list[dict]  # best first
    notices: list[str] = field(default_factory=list)


def check_model(gallery: ImageGallery, clip) -> None:
    if gallery.saved is not None:
        check_index_model(gallery.saved, clip)  # names the file and how to rebuild it
    if gallery.model_id != clip.model_id:
        raise MMDemoError("gallery_model_mismatch",
                          f"The gallery was embedded with {gallery.model_id!r}, not the current model "
                          f"{clip.model_id!r}; index it again with the current model.")


def saved_gallery(saved: SavedIndex) -> ImageGallery:
    """A saved image index (``python -m mmdemo index build``) as a gallery to search."""
    if saved.modality != "image":
        raise MMDemoError("index_modality_mismatch", f"{saved.path.name} is an index of {saved.modality}, not of "
                                                     "images: search it as such (the Audio tab, or `search`).")
    return ImageGallery(saved.model_id, saved.index, saved=saved)


def default_gallery_files(cache_dir: Path | None = None) -> Path:
    """The folder of example images: the bundled ones, else a few rendered on the spot."""
    return example_gallery("images", IMAGE_SUFFIXES, cache_dir)


def build_gallery(files: Any, clip, *, cache_dir: Path | None = None, extract_dir: Path | None = None,
                  max_files: int = MAX_GALLERY_FILES,
                  progress: Callable[[int, int], None] | None = None) -> ImageGallery:
    """Embed image files, folders or zips (``captions.json`` beside them gives captions).

    Unreadable files are skipped with one notice; none readable is an error. With
    ``cache_dir``, embeddings are cached by (file content, model id), so indexing
    unchanged files again encodes nothing (``gallery.encoded == 0``).
    """
    if isinstance(files, (list, tuple)):
        files = [as_source(f) for f in files if f is not None]
        if not files:
            raise MMDemoError("gallery_empty", "Upload some images (several files, a folder or a zip) to search.")
    elif files is not None and not isinstance(files, (str, Path)):
        files = [as_source(files)]
    paths, captions, notices = gallery_files(files, suffixes=IMAGE_SUFFIXES, max_files=max_files, what="images",
                                             extract_dir=extract_dir)
    cache = EmbeddingCache(cache_dir, clip.model_id) if cache_dir is not None else None

    items: list[dict] = []
    chunks: list[np.ndarray] = []
    skipped: list[str] = []
    encoded = 0
    batch: list[tuple[str, Any]] = []  # (content hash, PIL image) waiting to be encoded
    batch_pixels = 0

    def flush() -> None:
        nonlocal batch, batch_pixels, encoded
        if not batch:
            return
        images = [im for _, im in batch]

        def compute(positions: list[int]) -> np.ndarray:
            return np.asarray(clip.encode_images([images[i] for i in positions], batch_size=_ENCODE_BATCH), np.float32)

        if cache is not None:
            emb, n_new = cache.get_or_compute([h for h, _ in batch], compute)
        else:
            emb, n_new = compute(list(range(len(images)))), len(images)
        chunks.append(np.asarray(emb, np.float32))
        encoded += n_new
        batch, batch_pixels = [], 0

    for n, path in enumerate(paths):
        try:
            loaded = load_image(path)
        except MMDemoError as exc:
            skipped.append(str(exc))
        else:
            notices.extend(loaded.notices)
            digest = file_hash(path) if cache is not None else ""
            items.append({"name": path.name, "path": str(path), "caption": captions.get(path.name, "")})
            batch.append((digest, loaded.image))
            batch_pixels += loaded.image.width * loaded.image.height
            if len(batch) >= _ENCODE_BATCH or batch_pixels >= _BATCH_PIXELS:
                flush()
        if progress is not None:
            progress(n + 1, len(paths))
    flush()
    if skipped:
        notices.append(skipped_notice(skipped, "image(s)"))
    if not items:
        raise MMDemoError("gallery_unreadable", "None of the images could be read. " + (
            skipped[0] if skipped else "Upload PNG, JPEG, GIF, WebP, BMP or TIFF files."))
    emb = np.concatenate(chunks)
    index = EmbeddingIndex(model_id=clip.model_id, dim=int(emb.shape[1]))
    index.add(emb, items)
    return ImageGallery(clip.model_id, index, notices, encoded)


def search_images(gallery: ImageGallery, query: str, clip, *, k: int = 8) -> SearchResult:
    """The ``k`` gallery images closest to a text: [{label, score, path, caption}], score = cosine."""
    check_model(gallery, clip)
    query, notices = read_query(query, clip)
    q = np.asarray(clip.encode_texts([query]), np.float32)
    hits = gallery.index.search(q, k=min(result_count(k), len(gallery)))[0]
    return SearchResult([{"label": h.item.get("name", str(h.index)), "score": h.score, "path": h.item.get("path"),
                          "caption": h.item.get("caption", "")} for h in hits], notices)


def search_texts(source: Any, texts: str | Sequence[str], clip, *, k: int = 5, name: str | None = None) -> SearchResult:
    """The ``k`` texts closest to an image: [{label, score}], score = cosine similarity."""
    items, notices = parse_texts(texts, "texts")
    loaded = load(source, name)
    notices = loaded.notices + notices + text_notices(clip, items, "texts")
    img = np.asarray(clip.encode_images([loaded.image]), np.float32)
    notices += image_notice(clip, [loaded.image])
    sim = (img @ np.asarray(clip.encode_texts(items), np.float32).T)[0]
    order = np.argsort(-sim, kind="stable")[: result_count(k)]
    return SearchResult([{"label": items[i], "score": float(sim[i])} for i in order], notices)
