"""What one mixed search costs (tiny bundle, CPU), next to the two separate searches it
replaces (the Image tab's images by text and the Audio tab's sounds by text), measured in
the same run over the same example galleries (24 scenes, 16 sounds; each gallery's
embeddings built once beforehand, as the app caches them):

1. by text: one mixed search vs an image search plus a sound search;
2. by sound: one mixed search (the clip encoded, both kinds ranked) vs the Audio tab's
   texts-by-audio for one text (the clip encoded, one text ranked): what ranking both
   kinds of a gallery adds to encoding the query.

    python bench/bench_mixed_gallery.py [--quick]

Prints one JSON object; ``ratio`` is mixed time / separate time (< 1: the one search is
cheaper than the two).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import alternating_medians  # noqa: E402 - bench/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    runs = 5 if parser.parse_args().quick else 20

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks import audio as audio_tasks
    from mmdemo.tasks import image as image_tasks
    from mmdemo.tasks import mixed_gallery as mixed

    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    clip, audio = registry.for_slot("clip"), registry.for_slot("audio")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        images = image_tasks.build_gallery([image_tasks.default_gallery_files(cache)], clip, cache_dir=cache)
        sounds = audio_tasks.build_gallery([audio_tasks.default_gallery_files(cache)], audio, cache_dir=cache)
        gallery = mixed.mixed_gallery(images, sounds, clip, audio)
        clip_path = next(p for p in sorted(audio_tasks.default_gallery_files(cache).iterdir())
                         if p.suffix == ".wav")
        query = "a rising chirp"
        t = alternating_medians({
            "mixed": lambda: mixed.search_mixed(gallery, clip, audio, by="text", text=query, k=12),
            "separate": lambda: (image_tasks.search_images(images, query, clip, k=12),
                                 audio_tasks.search_gallery(sounds, query, audio, k=12))}, runs)
        out = {"runs": runs, "images": len(images.index.items), "sounds": len(sounds.items),
               "by_text": {"mixed_ms": round(t["mixed"] * 1e3, 2), "separate_ms": round(t["separate"] * 1e3, 2),
                           "ratio": round(t["mixed"] / t["separate"], 2)}}
        t = alternating_medians({
            "mixed": lambda: mixed.search_mixed(gallery, clip, audio, by="sound", sound=str(clip_path), k=12),
            "texts_by_audio": lambda: audio_tasks.search_texts_by_audio(str(clip_path), ["a rising chirp"], audio,
                                                                        k=1)}, runs)
        out["by_sound"] = {"mixed_ms": round(t["mixed"] * 1e3, 2),
                           "encode_clip_ms": round(t["texts_by_audio"] * 1e3, 2),
                           "ratio": round(t["mixed"] / t["texts_by_audio"], 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
