"""Training data written the way a user makes it: a CSV beside a media folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path


def write_dataset(root: Path, task: str = "scene_qa", n: int = 8, seed: int = 3, rows=None) -> Path:
    """A CSV + media folder like a user would make, from the generated world.

    ``rows(lines)`` may rewrite the table (header first) to make a broken file.
    """
    import soundfile as sf
    from PIL import Image

    from mmdemo.toyworld.tasks import make_examples

    (root / "media").mkdir(parents=True, exist_ok=True)
    lines = [["image", "text", "audio", "label"]]
    for i, e in enumerate(make_examples(task, n, seed=seed)):
        Image.fromarray(e.image).save(root / "media" / f"{i}.png")
        audio = ""
        if e.audio is not None:
            sf.write(root / "media" / f"{i}.wav", e.audio, 16000)
            audio = f"media/{i}.wav"
        lines.append([f"media/{i}.png", e.text, audio, e.label])
    if rows is not None:
        lines = rows(lines)
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    path = root / "data.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path
