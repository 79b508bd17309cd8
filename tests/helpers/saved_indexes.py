"""Saved indexes for the tests of ``--gallery-index``: the example galleries copied under
new names ("saved-..."), so a search that answers from them can't be answering from the
examples; images padded with random embeddings to a size that takes an approximate search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

SAVED = "saved-"
PADDING = "pad-"


def copy_gallery(source: Path, folder: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    """The files of ``source`` copied into ``folder`` as "saved-<name>", with their captions."""
    folder.mkdir(parents=True, exist_ok=True)
    captions = json.loads((source / "captions.json").read_text())
    out = {}
    for f in sorted(source.iterdir()):
        if f.suffix.lower() in suffixes:
            shutil.copy(f, folder / f"{SAVED}{f.name}")
            out[f"{SAVED}{f.name}"] = captions.get(f.name, "")
    (folder / "captions.json").write_text(json.dumps(out))
    return out


def saved_image_index(folder: Path, clip, out: Path, *, padding: int = 0, exact_limit: int | None = None,
                      seed: int = 0) -> Path:
    """The example scenes (copied into ``folder``) embedded by ``clip``, plus ``padding``
    random unit vectors whose items point at the first copied scene, saved to ``out``."""
    from mmdemo.index import EmbeddingIndex
    from mmdemo.media import IMAGE_SUFFIXES
    from mmdemo.tasks.image import build_gallery, default_gallery_files

    copy_gallery(default_gallery_files(None), folder, tuple(IMAGE_SUFFIXES))
    gallery = build_gallery([folder], clip)
    index = EmbeddingIndex(model_id=clip.model_id, dim=gallery.index.dim, exact_limit=exact_limit)
    index.add(np.asarray(gallery.index.embeddings), list(gallery.index.items))
    if padding:
        rng = np.random.default_rng(seed)
        pad = rng.standard_normal((padding, gallery.index.dim)).astype(np.float32)
        pad /= np.linalg.norm(pad, axis=1, keepdims=True)
        first = gallery.index.items[0]["path"]
        index.add(pad, [{"name": f"{PADDING}{i:05d}.png", "path": first, "caption": "padding"}
                        for i in range(padding)])
    index.save(out)
    return out


def write_long_sound(folder: Path, name: str = f"{SAVED}long-rising-chirp-then-white-noise.wav") -> Path:
    """An 8 s clip (a rising chirp, then white noise): several windows of one sound."""
    from mmdemo.tasks.audio import example_clip
    from mmdemo.toyworld.export import wav_bytes

    sr, wave = example_clip()
    path = folder / name
    path.write_bytes(wav_bytes(wave, sr))
    captions = json.loads((folder / "captions.json").read_text())
    captions[name] = "a rising chirp followed by a burst of white noise"
    (folder / "captions.json").write_text(json.dumps(captions))
    return path


def saved_sound_folder(folder: Path) -> Path:
    """The example sounds copied into ``folder`` as "saved-..." plus one long clip."""
    from mmdemo.media import AUDIO_SUFFIXES
    from mmdemo.tasks.audio import default_gallery_files

    copy_gallery(default_gallery_files(None), folder, tuple(AUDIO_SUFFIXES))
    write_long_sound(folder)
    return folder


def saved_sound_index(folder: Path, audio, out: Path) -> Path:
    """``saved_sound_folder`` embedded window by window by ``audio``, saved to ``out``."""
    from mmdemo.tasks.audio import build_gallery
    from mmdemo.tasks.saved_index import sound_index

    sound_index(build_gallery([saved_sound_folder(folder)], audio)).save(out)
    return out


def serve(settings):
    """The app for ``settings`` launched in this process on a free port: the demo
    (``demo.local_url``); the caller closes it."""
    import socket

    from mmdemo.ui.app import build_demo, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_demo(settings)
    launch(demo, settings, server_port=port, prevent_thread_lock=True, quiet=True)
    return demo


def other_model(path: Path, out: Path, model_id: str = "ViT-B-32/laion2b:0123") -> Path:
    """A copy of the saved index at ``path`` that claims another model made it."""
    from mmdemo.index import EmbeddingIndex

    index = EmbeddingIndex.load(path, mmap=False)
    index.model_id = model_id
    return index.save(out)
