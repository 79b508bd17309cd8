"""The Images + sounds tab: one gallery of images and sounds, searched by a text, an image or
a sound, results of both kinds ranked in one list.

Handlers call :mod:`mmdemo.tasks.mixed_gallery` and only format its hits: image thumbnails
and, for sounds, the log-mel the model heard in its best window, written once each by
content (``common.ResultFiles``), a table and a player for the best sound.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import gradio as gr
import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.hashing import file_hash
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, load_audio
from mmdemo.tasks import audio as audio_tasks
from mmdemo.tasks import image as image_tasks
from mmdemo.tasks import mixed_gallery as tasks
from mmdemo.ui.common import (MODEL_CONCURRENCY_ID, ResultFiles, file_path, image_source, thumbnail, user_errors,
                              warn_all)

INTRO = (
    "Images and sounds in **one gallery**, searched by a text, an image or a sound; results of both kinds are "
    "ranked in one list. With the tiny bundle the sound encoder was trained into the CLIP's text space, so "
    "everything is compared by cosine in that one space. With a real profile (a CLIP beside a CLAP) the two "
    "spaces differ: they are **bridged through text** (an image reaches sounds through the texts it matches, and "
    "a sound images likewise), and each kind's scores are standardised over the gallery before both are ranked "
    "together, so the best of each kind shows even when nothing of that kind fits the query well.")
COLUMNS = ["rank", "kind", "name", "score", "cosine", "caption"]
MEL_PIXELS = 256  # width of the log-mel pictures that stand for sounds
ZIP_AND_CAPTIONS = {".zip", ".json"}  # read by both builders: a zip may hold both kinds


def _mel_picture(results: ResultFiles, audio, hit: dict) -> str:
    """What the model heard of a sound (its best window's log-mel) as a small picture."""
    from PIL import Image

    def write(f) -> None:
        clip = load_audio(hit["path"], target_sr=audio.sample_rate, max_seconds=audio_tasks.MAX_GALLERY_SECONDS)
        a, b = (int(round(t * clip.sample_rate)) for t in (hit["start"], hit["end"]))
        mel = np.asarray(audio.mel(clip.wave[a:b] if b > a else clip.wave), np.float32)
        lo, hi = np.percentile(mel, [2, 99.5])
        x = np.clip((mel - lo) / max(float(hi - lo), 1e-6), 0, 1)[::-1]  # low bands at the bottom
        # A dark-to-warm ramp (magma-like), so a sound never reads as a photo.
        rgb = np.stack([x ** 0.6, x ** 1.6, 0.35 * (1 - x) + 0.2 * x ** 3], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).resize((MEL_PIXELS, MEL_PIXELS // 2)).save(f, format="WEBP")

    key = f"mixed-mel:{audio.model_id}:{file_hash(hit['path'])}:{hit['start']}:{hit['end']}".encode()
    return results.get(key, ".webp", write)


def _player(results: ResultFiles, path: str) -> str:
    """A copy of the sound for the page's player (an uploaded zip's files go after the request)."""
    return results.get(f"mixed-sound:{file_hash(path)}".encode(), Path(path).suffix.lower(),
                       lambda f: f.write(Path(path).read_bytes()))


def _split(files) -> tuple[list, list]:
    """Uploaded paths -> (what the image builder reads, what the sound builder reads)."""
    paths = [file_path(f) for f in (files if isinstance(files, list) else [files] if files else [])]
    paths = [p for p in paths if p]
    kind = {p: Path(p).suffix.lower() for p in paths}
    return ([p for p in paths if kind[p] in IMAGE_SUFFIXES | ZIP_AND_CAPTIONS],
            [p for p in paths if kind[p] in AUDIO_SUFFIXES | ZIP_AND_CAPTIONS])


class Defaults:
    """The example images and sounds as one gallery, built on first search, once per pair of models."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.images = image_tasks.default_gallery_files(self.cache_dir)
        self.sounds = audio_tasks.default_gallery_files(self.cache_dir)
        self._built: dict = {}
        self._lock = threading.Lock()

    def get(self, clip, audio) -> tasks.MixedGallery:
        key = (clip.model_id, audio.model_id)
        with self._lock:
            if key not in self._built:
                self._built[key] = tasks.mixed_gallery(
                    image_tasks.build_gallery([self.images], clip, cache_dir=self.cache_dir),
                    audio_tasks.build_gallery([self.sounds], audio, cache_dir=self.cache_dir), clip, audio)
            return self._built[key]


def _uploaded(files, clip, audio, cache_dir: Path, extract_dir: Path) -> tasks.MixedGallery:
    image_files, sound_files = _split(files)
    built, errors = {}, []
    for kind, chosen, build, model in (("images", image_files, image_tasks.build_gallery, clip),
                                       ("sounds", sound_files, audio_tasks.build_gallery, audio)):
        if not chosen:
            continue
        try:
            built[kind] = build(chosen, model, cache_dir=cache_dir, extract_dir=extract_dir / kind)
        except MMDemoError as exc:  # a zip of images alone has no sounds: fine, if the other kind is there
            errors.append(exc)
    if not built:
        if len(errors) == 2:  # a zip, read for both kinds: say what each found
            raise MMDemoError("gallery_empty", f"No images or sounds could be read from the upload. Images: "
                                               f"{errors[0]} Sounds: {errors[1]}")
        raise errors[0] if errors else MMDemoError(
            "gallery_empty", "Upload images or sounds (files or zips) to search, or none for the examples.")
    g = tasks.mixed_gallery(built.get("images"), built.get("sounds"), clip, audio)
    if len(built) == 2:  # each builder skips the other kind's files in a zip: not news to the user
        g.notices = [n for n in g.notices if getattr(n, "code", None) != "files_skipped"]
    return g


def build(registry, settings):
    """Lay out the tab; returns what removes its result files when the app closes."""
    from mmdemo.settings import Settings

    settings = settings or Settings()
    defaults = Defaults(settings.cache_dir)
    results = ResultFiles(prefix="mmdemo-mixed-")

    with gr.Tab("Images + sounds", id="mixed_gallery"):
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                by = gr.Radio([("a text", "text"), ("an image", "image"), ("a sound", "sound")], value="text",
                              label="Search by", elem_id="mixed-by")
                query = gr.Textbox("a red circle with a rising chirp", label="Text", elem_id="mixed-query")
                image = gr.Image(sources=["upload", "clipboard"], type="filepath", label="Image", height=180,
                                 elem_id="mixed-image")
                sound = gr.Audio(type="filepath", label="Sound", elem_id="mixed-sound")
                k = gr.Slider(1, tasks.MAX_RESULTS, value=12, step=1, label="Results")
                files = gr.File(file_count="multiple", type="filepath", elem_id="mixed-files",
                                file_types=sorted(IMAGE_SUFFIXES | AUDIO_SUFFIXES | ZIP_AND_CAPTIONS),
                                label="Your images and sounds, or zips (optional; default: the example scenes "
                                      "and sounds)")
                button = gr.Button("Search", variant="primary")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Results, both kinds ranked together (sounds: what the model heard)",
                                     columns=4, height="auto", object_fit="contain", elem_id="mixed-results")
                player = gr.Audio(type="filepath", label="Best sound", interactive=False, elem_id="mixed-player")
                notes = gr.Markdown(elem_id="mixed-notes")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Ranked results", elem_id="mixed-table")

        @user_errors
        def search_mixed(by, query, image, sound, k, files, progress=gr.Progress()):
            """Search one gallery of images and sounds by a text, an image or a sound.

            Args:
                by: "text", "image" or "sound": which input is the query.
                query: the text to search with (by text).
                image: the image to search with (by image; a file or http(s) URL).
                sound: the sound to search with (by sound; a file or http(s) URL).
                k: how many results, 1-48.
                files: your images, sounds or zips to search; none = the example scenes and sounds.

            Returns:
                the results, both kinds ranked together (sounds shown as the log-mel the model heard)
                the best sound among the results (a player)
                notes (Markdown): how the kinds were ranked together
                a table [rank, kind, name, score, cosine, caption]
            """
            clip, audio = registry.for_slot("clip", lazy=True), registry.for_slot("audio", lazy=True)
            source, name = image_source(image) if by == "image" else (file_path(sound), None)
            progress(0, desc="Indexing the gallery")
            extract = Path(tempfile.mkdtemp(prefix="mmdemo-mixed-upload-"))
            try:
                g = _uploaded(files, clip, audio, settings.cache_dir, extract) if files else defaults.get(clip, audio)
                res = tasks.search_mixed(g, clip, audio, by=by, text=query, image=source if by == "image" else None,
                                         sound=source if by == "sound" else None, k=k, name=name)
                # Pictures and players now: an uploaded zip's files go when this returns.
                shown = [(thumbnail(results, h["path"]) if h["kind"] == "image" else _mel_picture(results, audio, h),
                          f"#{i + 1} · {h['kind']} · {h['label']} · {h['score']:.3f}")
                         for i, h in enumerate(res.hits)]
                best_sound = next((_player(results, h["path"]) for h in res.hits if h["kind"] == "sound"), None)
            finally:
                shutil.rmtree(extract, ignore_errors=True)
            notices = list(dict.fromkeys(g.notices + res.notices))
            warn_all(notices)
            how = ("Ranked by cosine in one space (sounds live in the CLIP's text space)." if res.method == "cosine"
                   else "Ranked by scores standardised per kind (the two models' spaces are bridged through text).")
            n_img = sum(h["kind"] == "image" for h in res.hits)
            text = f"{n_img} image(s) and {len(res.hits) - n_img} sound(s) in the top {len(res.hits)}. {how}"
            if notices:
                text += "\n\n**Notes**\n" + "\n".join(f"- {n}" for n in notices)
            rows = [[i + 1, h["kind"], h["label"], h["score"], h["cosine"], h["caption"]]
                    for i, h in enumerate(res.hits)]
            return shown, best_sound, text, rows

        for i, trigger in enumerate((button.click, query.submit)):
            trigger(search_mixed, [by, query, image, sound, k, files], [gallery, player, notes, table],
                    api_name="search_mixed" if i == 0 else False, concurrency_id=MODEL_CONCURRENCY_ID,
                    preprocess=False)
        # Giving an input picks it as the query.
        image.upload(lambda: "image", None, by, api_name=False, queue=False)
        sound.upload(lambda: "sound", None, by, api_name=False, queue=False)
        query.input(lambda: "text", None, by, api_name=False, queue=False)
    return results.close
