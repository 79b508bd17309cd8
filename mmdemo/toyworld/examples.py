"""A few rendered examples of each generated task, as files for the Classify tab's galleries.

Here, beside the generator, so that the task layer and the UI reach them through
``mmdemo.tasks.classify`` without either knowing how the world is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmdemo.atomic import atomic_write_bytes
from mmdemo.toyworld import scenes
from mmdemo.toyworld.export import png_bytes, wav_bytes
from mmdemo.toyworld.tasks import TASKS, make_examples


def generated_examples(out_dir: str | Path, per_task: int = 3, seed: int = 2024) -> list[dict]:
    """A few rendered examples of each generated task as files (PNG, WAV) for a gallery:
    [{task, image, text, audio, label, caption, objects, zero_shot_labels}]; files are
    written only when missing (the generator is seeded, so they never go stale)."""
    out_dir = Path(out_dir)
    rows = []
    for task, info in TASKS.items():
        n = max(per_task, len(info.labels)) if "audio" in info.modalities else per_task
        for i, e in enumerate(make_examples(task, n, seed=seed, split="train", image_size=64)):
            img = out_dir / f"{task}-{i}.png"
            if not img.is_file():
                atomic_write_bytes(img, png_bytes(np.asarray(e.image)))
            wav = None
            if e.audio is not None:
                wav = out_dir / f"{task}-{i}.wav"
                if not wav.is_file():
                    atomic_write_bytes(wav, wav_bytes(np.asarray(e.audio, np.float32)))
            present = list(dict.fromkeys(f"{o.colour} {o.shape}" for o in e.scene.objects))
            rng = np.random.default_rng(seed + i)
            others = [p for p in (f"{c} {s}" for c in scenes.COLOURS for s in scenes.SHAPES) if p not in present]
            choices = present + [others[k] for k in rng.choice(len(others), 4, replace=False)]
            rows.append({"task": task, "image": str(img), "text": e.text, "audio": str(wav) if wav else None,
                         "label": e.label, "caption": scenes.caption(e.scene),
                         "zero_shot_labels": sorted(choices), "objects": present})
    return rows
