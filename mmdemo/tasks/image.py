"""Image tasks: caption an image, rank captions, search images by text and texts by image.

Skeleton: public names and signatures are final; bodies are being filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.index import EmbeddingIndex

MAX_CANDIDATES = 200  # captions to rank / texts to search
MAX_GALLERY_FILES = 500
MAX_HEATMAP_IMAGES = 16
MAX_QUERY_CHARS = 300

__all__ = [
    "MAX_CANDIDATES", "MAX_GALLERY_FILES", "MAX_HEATMAP_IMAGES", "MAX_QUERY_CHARS",
    "CaptionResult", "RankResult", "ImageGallery", "SearchResult", "Heatmap", "EmbeddingMap",
    "caption_image", "caption_bank", "rank_captions", "default_gallery_files", "build_gallery",
    "search_images", "search_texts", "similarity_heatmap", "embedding_map",
]


@dataclass
class CaptionResult:
    captions: list[str]
    notices: list[str] = field(default_factory=list)


@dataclass
class RankResult:
    ranked: list[dict]  # [{label, score, similarity}] best first
    notices: list[str] = field(default_factory=list)


@dataclass
class ImageGallery:
    model_id: str
    index: EmbeddingIndex
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class SearchResult:
    hits: list[dict]
    notices: list[str] = field(default_factory=list)


@dataclass
class Heatmap:
    images: list[str]
    texts: list[str]
    similarity: np.ndarray  # [n_images, n_texts]
    notices: list[str] = field(default_factory=list)


@dataclass
class EmbeddingMap:
    points: np.ndarray  # [N, 2]
    labels: list[str]
    query_point: np.ndarray | None
    query_label: str
    explained_variance: list[float]


def caption_image(source: Any, captioner, *, method: str = "beam", num_beams: int = 3, max_length: int = 20,
                  temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9, num_captions: int = 1,
                  seed: int | None = 0, name: str | None = None) -> CaptionResult:
    raise NotImplementedError


def caption_bank(clip=None) -> list[str]:
    raise NotImplementedError


def rank_captions(source: Any, candidates: str | Sequence[str] | None, clip, *, name: str | None = None) -> RankResult:
    raise NotImplementedError


def default_gallery_files(cache_dir: Path | None = None) -> Path:
    raise NotImplementedError


def build_gallery(files: Any, clip, *, cache_dir: Path | None = None, extract_dir: Path | None = None,
                  max_files: int = MAX_GALLERY_FILES,
                  progress: Callable[[int, int], None] | None = None) -> ImageGallery:
    raise NotImplementedError


def search_images(gallery: ImageGallery, query: str, clip, *, k: int = 8) -> SearchResult:
    raise NotImplementedError


def search_texts(source: Any, texts: str | Sequence[str], clip, *, k: int = 5, name: str | None = None) -> SearchResult:
    raise NotImplementedError


def similarity_heatmap(sources: Sequence, texts: str | Sequence[str], clip) -> Heatmap:
    raise NotImplementedError


def embedding_map(gallery: ImageGallery, clip, *, query_text: str | None = None, query_image: Any = None) -> EmbeddingMap:
    raise NotImplementedError
