"""Image tasks: caption an image, rank captions, search images by text and texts by image.

Pure functions over the registry's handles, using only their public interface:
a CLIP handle (``registry.for_slot("clip")``: ``encode_images``, ``encode_texts``,
``truncated``, ``zero_shot``, ``logit_scale``, ``model_id``) and a captioner
(``registry.for_slot("captioner")``: ``generate``). A real open_clip pair (e.g.
ViT-B-32 + coca_ViT-B-32) replaces the tiny bundle without touching this module.

Every bad input ends in an ``MMDemoError`` saying what to do; things worth telling
but not worth refusing (a truncated caption, a skipped file, an animated GIF)
come back as ``notices``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingIndex
from mmdemo.media import IMAGE_SUFFIXES, LoadedImage, collect_files, load_image, parse_text_lines

MAX_CANDIDATES = 200  # captions to rank / texts to search
MAX_GALLERY_FILES = 500
MAX_HEATMAP_IMAGES = 16
MAX_QUERY_CHARS = 300

# Images decoded but not yet encoded are held at most this many at a time, and at
# most this many pixels in all: a gallery of 500 large photos must not sit in memory.
_ENCODE_BATCH = 32
_BATCH_PIXELS = 64_000_000
_MAP_NEIGHBOURS = 3  # a text query sits among this many of its best matches on the map

__all__ = [
    "MAX_CANDIDATES", "MAX_GALLERY_FILES", "MAX_HEATMAP_IMAGES", "MAX_QUERY_CHARS",
    "CaptionResult", "RankResult", "ImageGallery", "SearchResult", "Heatmap", "EmbeddingMap",
    "caption_image", "caption_bank", "rank_captions", "default_gallery_files", "build_gallery",
    "search_images", "search_texts", "similarity_heatmap", "embedding_map",
]


# --------------------------------------------------------------------------- results


@dataclass
class CaptionResult:
    captions: list[str]
    notices: list[str] = field(default_factory=list)


@dataclass
class RankResult:
    ranked: list[dict]  # [{label, score (softmax probability), similarity (cosine)}] best first
    notices: list[str] = field(default_factory=list)


@dataclass
class ImageGallery:
    """Images embedded by one CLIP model; ``index.items`` are {name, path, caption}."""

    model_id: str
    index: EmbeddingIndex
    notices: list[str] = field(default_factory=list)
    encoded: int = 0  # images actually run through the encoder (the rest came from the cache)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class SearchResult:
    hits: list[dict]  # best first
    notices: list[str] = field(default_factory=list)


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


# --------------------------------------------------------------------------- helpers


def _as_source(source: Any) -> Any:
    """What upload widgets hand over (dicts, file objects, gallery tuples) -> something load_image reads."""
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (int, float)):
        source = source[0]  # (image, caption) rows of a gallery widget
    if isinstance(source, dict):
        source = source.get("path") or source.get("name") or source.get("url")
    elif isinstance(getattr(source, "path", None), (str, Path)):  # gradio FileData and the like
        source = source.path
    return source


def _load(source: Any, name: str | None = None) -> LoadedImage:
    source = _as_source(source)
    if source is None or (isinstance(source, str) and not source.strip()):
        raise MMDemoError("Upload, paste or pick an image first.")
    return load_image(source, name=name)


def _truncation_notice(clip, texts: Sequence[str], what: str) -> list[str]:
    over = [t for t, cut in zip(texts, clip.truncated(list(texts))) if cut]
    if not over:
        return []
    shown = ", ".join(repr(t if len(t) <= 40 else t[:37] + "...") for t in over[:3]) + (" ..." if len(over) > 3 else "")
    n = getattr(clip, "context_length", None)
    limit = f" ({n} tokens)" if n else ""
    if what == "query":
        return [f"The query is over the model's context length{limit}: truncated, so only its beginning was searched."]
    return [f"{len(over)} of the {what} {'was' if len(over) == 1 else 'were'} over the model's context length{limit}: "
            f"truncated, so only the beginning was scored: {shown}."]


def _parse_texts(texts: str | Sequence[str] | None, what: str) -> tuple[list[str], list[str]]:
    return parse_text_lines(texts, what=what, max_items=MAX_CANDIDATES, max_chars=MAX_QUERY_CHARS)


def _check_model(gallery: ImageGallery, clip) -> None:
    if gallery.model_id != clip.model_id:
        raise MMDemoError(f"The gallery was embedded with {gallery.model_id!r}, not the current model "
                          f"{clip.model_id!r}; index it again with the current model.")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- captioning


def caption_image(source: Any, captioner, *, method: str = "beam", num_beams: int = 3, max_length: int = 20,
                  temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9, num_captions: int = 1,
                  seed: int | None = 0, name: str | None = None) -> CaptionResult:
    """Generated caption(s) for one image; decoding options are checked before any work."""
    from mmdemo.models.decoding import DecodeOptions

    def as_int(v):
        return int(v) if isinstance(v, float) and v.is_integer() else v  # sliders send 3.0

    options = DecodeOptions(method=str(method or "beam").strip().lower(), num_beams=as_int(num_beams),
                            max_length=as_int(max_length), temperature=temperature, top_k=as_int(top_k),
                            top_p=top_p, num_return=as_int(num_captions),
                            seed=None if seed is None or seed == "" else as_int(seed))
    try:
        options.validate()
    except MMDemoError as exc:  # name the controls the user sees, not DecodeOptions' fields
        msg = str(exc).replace("num_return", "the number of captions").replace("num_beams", "the number of beams")
        raise MMDemoError(msg.replace("max_length", "the max length")) from None
    loaded = _load(source, name)
    captions = captioner.generate([loaded.image], options)[0]
    notices = list(loaded.notices)
    said = [c.strip() for c in captions if c.strip()]
    if not said:
        notices.append("The model produced an empty caption; try beam search or a larger max length.")
    unique = list(dict.fromkeys(said))
    if len(unique) < len(said):
        notices.append(f"Merged {len(said) - len(unique)} duplicate caption(s) of the {len(said)} generated; "
                       "sampling (top-k/top-p) with a higher temperature gives more variety.")
    return CaptionResult(unique or [""], notices)


_GENERIC_SUBJECTS = (
    "a dog", "a cat", "a bird", "a horse", "a cow", "a sheep", "an elephant", "a bear", "a zebra", "a giraffe",
    "a fish", "a person", "a man", "a woman", "a child", "a group of people", "a baby", "a car", "a bus", "a truck",
    "a bicycle", "a motorcycle", "a train", "an airplane", "a boat", "a street", "a city skyline", "a building",
    "a house", "a bridge", "a mountain", "a beach", "a forest", "a lake", "a river", "a desert", "a field of flowers",
    "a sunset", "the night sky", "snow", "a garden", "a tree", "a flower", "a kitchen", "a living room", "a bedroom",
    "an office", "a classroom", "a restaurant", "a plate of food", "a pizza", "a cake", "fruit", "vegetables",
    "a cup of coffee", "a bottle", "a laptop", "a phone", "a book", "a chair", "a table", "a clock", "a toy",
    "a ball", "a painting", "a drawing", "a cartoon", "a diagram", "a chart", "a screenshot", "text", "a logo",
    "a map", "a face", "a crowd", "a sports game", "a musical instrument", "a shoe", "a bag", "a hat",
)


def caption_bank(clip=None) -> list[str]:
    """Built-in candidate captions for ranking when the user gives none.

    The tiny bundle knows only the generated world, so its bank is that world's
    one-object captions (every size, colour and shape, on every background); any
    other model gets a list of everyday English captions.
    """
    from mmdemo.toyworld import scenes

    words = set(getattr(getattr(clip, "tokenizer", None), "words", None) or ())
    if clip is None or set(scenes.SHAPES) | set(scenes.COLOURS) <= words:
        return [f"a {size} {colour} {shape} on a {bg} background"
                for colour in scenes.COLOURS for shape in scenes.SHAPES for size in scenes.SIZES
                for bg in scenes.BACKGROUNDS]
    return [f"a photo of {s}" for s in _GENERIC_SUBJECTS]


def rank_captions(source: Any, candidates: str | Sequence[str] | None, clip, *, name: str | None = None) -> RankResult:
    """Candidate captions (one per line; blank = the built-in bank) ranked for an image.

    ``score`` is CLIP's zero-shot probability (softmax over the candidates at the
    model's logit scale), ``similarity`` the cosine similarity behind it.
    """
    blank = candidates is None or (isinstance(candidates, str) and not candidates.strip()) or (
        not isinstance(candidates, str) and not any(str(c).strip() for c in candidates if c is not None))
    if blank:
        items, notices = caption_bank(clip), []
    else:
        items, notices = _parse_texts(candidates, "captions")
    loaded = _load(source, name)
    notices = loaded.notices + notices + _truncation_notice(clip, items, "captions")
    img = np.asarray(clip.encode_images([loaded.image]), np.float32)
    txt = np.asarray(clip.encode_texts(items), np.float32)
    sim = (img @ txt.T)[0]
    probs = np.asarray(clip.zero_shot(img, txt), np.float64)[0]
    order = np.argsort(-probs, kind="stable")
    return RankResult([{"label": items[i], "score": float(probs[i]), "similarity": float(sim[i])} for i in order],
                      notices)


# --------------------------------------------------------------------------- gallery


def _render_fallback_images(dest: Path) -> Path:
    """Eight generated scenes, one per colour, for when the bundled examples are absent."""
    import io

    from PIL import Image

    from mmdemo.atomic import atomic_write_bytes, atomic_write_json
    from mmdemo.toyworld import scenes as S

    rng = np.random.default_rng(1234)
    captions = {}
    for n, colour in enumerate(S.COLOURS):
        shape = S.SHAPES[(n * 3) % len(S.SHAPES)]
        if (colour, shape) in S.HELD_OUT:
            shape = S.SHAPES[(n * 3 + 1) % len(S.SHAPES)]
        scene = S.sample_scene_with(rng, [(colour, shape)], 1, "train")
        cap = S.caption(scene)
        fname = f"{n:02d}-{cap.split(' on a ')[0].replace('a ', '', 1).replace(' ', '-')}.png"
        buf = io.BytesIO()
        Image.fromarray(S.render_scene(scene)).save(buf, format="PNG")
        atomic_write_bytes(dest / fname, buf.getvalue())
        captions[fname] = cap
    atomic_write_json(dest / "captions.json", captions)
    return dest


def default_gallery_files(cache_dir: Path | None = None) -> Path:
    """The folder of example images: the bundled ones, else a few rendered on the spot."""
    from mmdemo.paths import EXAMPLES_DIR

    bundled = EXAMPLES_DIR / "images"
    if bundled.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in bundled.iterdir()):
        return bundled
    if cache_dir is not None:
        dest = Path(cache_dir) / "example-images"
        try:
            if not (dest / "captions.json").is_file():
                _render_fallback_images(dest)
            return dest
        except OSError:
            pass  # a read-only cache folder must not stop the app: use a temporary one
    return _render_fallback_images(Path(tempfile.mkdtemp(prefix="mmdemo-images-")))


def build_gallery(files: Any, clip, *, cache_dir: Path | None = None, extract_dir: Path | None = None,
                  max_files: int = MAX_GALLERY_FILES,
                  progress: Callable[[int, int], None] | None = None) -> ImageGallery:
    """Embed image files, folders or zips (``captions.json`` beside them gives captions).

    Unreadable files are skipped with one notice; none readable is an error. With
    ``cache_dir``, embeddings are cached by (file content, model id), so indexing
    unchanged files again encodes nothing (``gallery.encoded == 0``).
    """
    from mmdemo.index import EmbeddingCache, file_hash
    from mmdemo.tasks.audio import read_captions

    if isinstance(files, (list, tuple)):
        files = [_as_source(f) for f in files if f is not None]
        if not files:
            raise MMDemoError("Upload some images (several files, a folder or a zip) to search.")
    elif files is not None and not isinstance(files, (str, Path)):
        files = [_as_source(files)]
    paths, notices = collect_files(files, suffixes=IMAGE_SUFFIXES, max_files=max_files, what="images",
                                   extract_dir=extract_dir)
    # captions.json belongs beside the images; warning that it "is not an image" would only confuse.
    notices = [n for n in notices if not (n.startswith("Skipped 1 file(s)") and "captions.json'" in n)]
    captions: dict[str, str] = {}
    for folder in dict.fromkeys(p.parent for p in paths):
        for fname, caption in read_captions(folder).items():
            captions.setdefault(fname, caption)
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
        shown = "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        notices.append(f"Skipped {len(skipped)} unreadable image(s): {shown}")
    if not items:
        raise MMDemoError("None of the images could be read. " + (skipped[0] if skipped else
                                                                   "Upload PNG, JPEG, GIF, WebP, BMP or TIFF files."))
    emb = np.concatenate(chunks)
    index = EmbeddingIndex(model_id=clip.model_id, dim=int(emb.shape[1]))
    index.add(emb, items)
    return ImageGallery(clip.model_id, index, notices, encoded)


# --------------------------------------------------------------------------- search


def _query(query: str | None, clip) -> tuple[str, list[str]]:
    query = (query or "").strip() if isinstance(query, (str, type(None))) else str(query).strip()
    if not query:
        raise MMDemoError("Type what to search for (e.g. 'a red star').")
    notices = []
    if len(query) > MAX_QUERY_CHARS:
        query = query[:MAX_QUERY_CHARS].rstrip()
        notices.append(f"The query was longer than {MAX_QUERY_CHARS} characters and was shortened.")
    notices += _truncation_notice(clip, [query], "query")
    return query, notices


def _k(k: Any) -> int:
    try:
        return max(1, int(k))
    except (TypeError, ValueError):
        raise MMDemoError(f"The number of results must be a whole number (got {k!r}).") from None


def search_images(gallery: ImageGallery, query: str, clip, *, k: int = 8) -> SearchResult:
    """The ``k`` gallery images closest to a text: [{label, score, path, caption}], score = cosine."""
    _check_model(gallery, clip)
    query, notices = _query(query, clip)
    q = np.asarray(clip.encode_texts([query]), np.float32)
    hits = gallery.index.search(q, k=min(_k(k), len(gallery)))[0]
    return SearchResult([{"label": h.item.get("name", str(h.index)), "score": h.score, "path": h.item.get("path"),
                          "caption": h.item.get("caption", "")} for h in hits], notices)


def search_texts(source: Any, texts: str | Sequence[str], clip, *, k: int = 5, name: str | None = None) -> SearchResult:
    """The ``k`` texts closest to an image: [{label, score}], score = cosine similarity."""
    items, notices = _parse_texts(texts, "texts")
    loaded = _load(source, name)
    notices = loaded.notices + notices + _truncation_notice(clip, items, "texts")
    img = np.asarray(clip.encode_images([loaded.image]), np.float32)
    sim = (img @ np.asarray(clip.encode_texts(items), np.float32).T)[0]
    order = np.argsort(-sim, kind="stable")[: _k(k)]
    return SearchResult([{"label": items[i], "score": float(sim[i])} for i in order], notices)


def similarity_heatmap(sources: Sequence, texts: str | Sequence[str], clip) -> Heatmap:
    """Cosine similarity of every image to every text; unreadable images are skipped with a notice."""
    if sources is None or isinstance(sources, (str, Path, bytes)) or not isinstance(sources, Sequence):
        sources = [] if sources is None else [sources]
    sources = [s for s in sources if s is not None]
    if not sources:
        raise MMDemoError("Add at least one image for the heatmap.")
    if len(sources) > MAX_HEATMAP_IMAGES:
        raise MMDemoError(f"Too many images for the heatmap: {len(sources)} given, at most {MAX_HEATMAP_IMAGES} "
                          "are allowed. Remove some and try again.")
    items, notices = _parse_texts(texts, "texts")
    images, names, skipped = [], [], []
    for n, src in enumerate(sources):
        try:
            loaded = _load(src, None if isinstance(_as_source(src), (str, Path)) else f"image {n + 1}")
        except MMDemoError as exc:
            skipped.append(str(exc))
            continue
        notices.extend(loaded.notices)
        images.append(loaded.image)
        names.append(loaded.name)
    if not images:
        raise MMDemoError("None of the images could be read. " + skipped[0])
    if skipped:
        notices.append(f"Skipped {len(skipped)} unreadable image(s): " + "; ".join(skipped[:3]))
    notices += _truncation_notice(clip, items, "texts")
    sim = np.asarray(clip.encode_images(images), np.float32) @ np.asarray(clip.encode_texts(items), np.float32).T
    return Heatmap(names, items, sim, notices)


# --------------------------------------------------------------------------- embedding map


def embedding_map(gallery: ImageGallery, clip, *, query_text: str | None = None,
                  query_image: Any = None) -> EmbeddingMap:
    """The gallery in 2-D (PCA of its image embeddings, via SVD) with the query placed on it.

    An image query is projected like the gallery. A text query has no good place of
    its own among image embeddings: texts and images occupy separate cones of
    CLIP's space (the "modality gap", Liang et al. 2022), so its raw projection
    lands off to one side, near no image in particular. It is placed where its
    search results are instead: the centre of its top 3 images, weighted by the
    model's match probabilities. A text query wins when both are given.
    """
    _check_model(gallery, clip)
    emb = np.asarray(gallery.index.embeddings, np.float64)
    labels = [str(item.get("name", i)) for i, item in enumerate(gallery.index.items)]
    mean = emb.mean(axis=0)
    centred = emb - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = np.zeros((2, emb.shape[1]))
    comps[: min(2, len(vt))] = vt[:2]
    var = s ** 2
    total = float(var.sum())
    explained = [float(var[i] / total) if total > 0 and i < len(var) else 0.0 for i in range(2)]
    points = centred @ comps.T

    query_point, query_label = None, ""
    text = query_text.strip() if isinstance(query_text, str) else ""
    if text:
        query_label, _ = _query(text, clip)
        sims = emb @ np.asarray(clip.encode_texts([query_label]), np.float64)[0]
        top = np.argsort(-sims, kind="stable")[:_MAP_NEIGHBOURS]
        w = _softmax(float(clip.logit_scale) * sims[top])
        query_point = w @ points[top]
    elif query_image is not None and not (isinstance(query_image, str) and not query_image.strip()):
        loaded = _load(query_image)
        query_label = loaded.name
        query_point = (np.asarray(clip.encode_images([loaded.image]), np.float64)[0] - mean) @ comps.T
    return EmbeddingMap(points.astype(np.float32), labels,
                        None if query_point is None else query_point.astype(np.float32), query_label, explained)
