"""What a "why it matched" map costs per request (tiny bundle, CPU), next to the plain
score it explains, measured in the same run:

1. Image: rank captions for one scene (8 candidates; the baseline) vs the map of the
   best caption by each method (``tokens``: one forward pass; ``chefer``: a forward and
   a backward pass);
2. Audio: match one 6 s clip against 8 labels (the baseline) vs the occlusion map of
   one text (16 slices + 8 bands + 64 cells, and the window itself: 89 encodes).

    python bench/bench_match_maps.py [--quick]

Prints one JSON object; ``ratio`` is map time / baseline time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import alternating_medians  # noqa: E402 - bench/, beside this script

CAPTIONS = ["a large blue star on a plain background", "a small red circle on a striped background",
            "a large green square on a dotted background", "a small yellow triangle on a plain background",
            "a large white heart on a checkered background", "a small black cross on a plain background",
            "a large orange diamond on a striped background", "a small purple ring on a dotted background"]
LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone",
          "a series of fast clicks", "a major chord", "a minor chord", "a high square tone"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    runs = 3 if parser.parse_args().quick else 10

    import soundfile as sf
    from PIL import Image

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks import audio as audio_tasks
    from mmdemo.tasks import match_maps
    from mmdemo.tasks.image import rank_captions
    from mmdemo.toyworld import scenes, sounds

    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    clip, audio = registry.for_slot("clip"), registry.for_slot("audio")
    out: dict = {"runs": runs}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "scene.png"
        scene = scenes.sample_scene(np.random.default_rng(0), n_objects=2)
        Image.fromarray(scenes.render_scene(scene)).save(image)
        text = scenes.mention(scene.objects[0])
        t = alternating_medians({
            "rank": lambda: rank_captions(str(image), CAPTIONS, clip),
            "tokens": lambda: match_maps.explain_image_text(str(image), text, clip, method="tokens"),
            "chefer": lambda: match_maps.explain_image_text(str(image), text, clip, method="chefer")}, runs)
        out["image"] = {"baseline": "rank 8 captions", "baseline_ms": round(t["rank"] * 1e3, 1),
                        **{f"{m}_ms": round(t[m] * 1e3, 1) for m in ("tokens", "chefer")},
                        **{f"{m}_ratio": round(t[m] / t["rank"], 2) for m in ("tokens", "chefer")}}
        clip_path = Path(tmp) / "clip.wav"
        wave = sounds.render_sound(sounds.SoundSpec((sounds.SoundEvent("chirp", "rising", 3.0, 0.0),), True, 1))
        sf.write(clip_path, np.concatenate([np.zeros(3 * sounds.SAMPLE_RATE, np.float32), wave]), sounds.SAMPLE_RATE)
        t = alternating_medians({
            "match": lambda: audio_tasks.match_audio(str(clip_path), LABELS, audio),
            "map": lambda: match_maps.explain_audio_text(str(clip_path), "a rising chirp", audio)}, runs)
        out["audio"] = {"baseline": "match 8 labels", "baseline_ms": round(t["match"] * 1e3, 1),
                        "map_ms": round(t["map"] * 1e3, 1), "ratio": round(t["map"] / t["match"], 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
