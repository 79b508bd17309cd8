"""Image tasks: caption an image, rank captions, search images by text and texts by image.

Pure functions over the registry's handles, using only their public interface:
a CLIP handle (``registry.for_slot("clip")``: ``encode_images``, ``encode_texts``,
``truncated``, ``zero_shot``, ``logit_scale``, ``model_id``) and a captioner
(``registry.for_slot("captioner")``: ``generate``). A real open_clip pair (e.g.
ViT-B-32 + coca_ViT-B-32) replaces the tiny bundle without touching this package.

Every bad input ends in an ``MMDemoError`` saying what to do; things worth telling
but not worth refusing (a truncated caption, a skipped file, an animated GIF)
come back as ``notices``.

By job: ``captioning`` (caption, rank captions), ``gallery`` (index images, search
them by text, search texts by an image), ``maps`` (similarity heatmap, embedding
map), ``inputs`` (what they all read first). Import from here:
``from mmdemo.tasks import image as tasks; tasks.build_gallery(...)``.
"""

from mmdemo.media import read_captions
from mmdemo.tasks.image.captioning import CaptionResult, RankResult, caption_bank, caption_image, rank_captions
from mmdemo.tasks.image.gallery import (MAX_GALLERY_FILES, ImageGallery, SearchResult, build_gallery,
                                        default_gallery_files, saved_gallery, search_images, search_texts)
from mmdemo.tasks.image.inputs import MAX_CANDIDATES, MAX_QUERY_CHARS
from mmdemo.tasks.image.maps import MAX_HEATMAP_IMAGES, EmbeddingMap, Heatmap, embedding_map, similarity_heatmap

__all__ = [
    "MAX_CANDIDATES", "MAX_GALLERY_FILES", "MAX_HEATMAP_IMAGES", "MAX_QUERY_CHARS",
    "CaptionResult", "RankResult", "ImageGallery", "SearchResult", "Heatmap", "EmbeddingMap",
    "caption_image", "caption_bank", "rank_captions", "default_gallery_files", "build_gallery",
    "saved_gallery", "search_images", "search_texts", "similarity_heatmap", "embedding_map", "read_captions",
]
