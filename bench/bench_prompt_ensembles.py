"""What a prompt ensemble costs per zero-shot request (tiny bundle, CPU), next to the
single-prompt request measured in the same run:

1. Classify zero-shot of one image against 8 labels: the default template ("a {}")
   vs the tiny-world set (10 templates: 80 texts to encode instead of 8);
2. Audio match of one 3 s clip against 8 labels: labels as typed vs the tiny-world
   set (4 templates).

    python bench/bench_prompt_ensembles.py [--quick]

Prints one JSON object; ``ratio`` is ensemble time / single time (> 1: the ensemble is
slower), ``per_template_ms`` the extra cost of each template beyond the first.
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

IMAGE_LABELS = ["red circle", "blue star", "green square", "yellow triangle", "white heart", "black cross",
                "orange diamond", "purple ring"]
SOUND_LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone",
                "a series of fast clicks", "a major chord", "a minor chord", "a high square tone"]


def _row(single: float, ensemble: float, templates: int) -> dict:
    return {"single_ms": round(single * 1e3, 2), "ensemble_ms": round(ensemble * 1e3, 2), "templates": templates,
            "ratio": round(ensemble / single, 2),
            "per_template_ms": round((ensemble - single) * 1e3 / max(templates - 1, 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    runs = 5 if parser.parse_args().quick else 20

    from PIL import Image

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks import audio as audio_tasks
    from mmdemo.tasks import classify, prompts
    from mmdemo.toyworld import scenes, sounds

    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    clip, audio = registry.for_slot("clip"), registry.for_slot("audio")
    image_set = prompts.builtin_set("image", "tiny-world")
    audio_set = prompts.builtin_set("audio", "tiny-world")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "star.png"
        scene = scenes.Scene((scenes.SceneObject("star", "blue", "large", 0.5, 0.5),), "plain")
        Image.fromarray(scenes.render_scene(scene, size=64)).save(path)
        labels = "\n".join(IMAGE_LABELS)
        t = alternating_medians({
            "single": lambda: classify.zero_shot(str(path), None, None, labels, clip),
            "ensemble": lambda: classify.zero_shot(str(path), None, None, labels, clip, templates=image_set.text)},
            runs)
        single, ensemble = t["single"], t["ensemble"]
    out = {"runs": runs, "labels": len(IMAGE_LABELS),
           "image_zero_shot": _row(single, ensemble, len(image_set.templates))}
    wave = sounds.render_sound(sounds.SoundSpec((sounds.SoundEvent("chirp", "rising", 3.0, 0.0),), True, 1))
    clip_in = (sounds.SAMPLE_RATE, wave)
    t = alternating_medians({
        "single": lambda: audio_tasks.match_audio(clip_in, SOUND_LABELS, audio),
        "ensemble": lambda: audio_tasks.match_audio(clip_in, SOUND_LABELS, audio, templates=audio_set.text)}, runs)
    single, ensemble = t["single"], t["ensemble"]
    out["audio_match"] = _row(single, ensemble, len(audio_set.templates))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
