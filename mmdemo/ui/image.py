"""The Image tab: caption an image, rank captions, search images by text and texts by image.

Handlers call mmdemo.tasks.image and only format its results (plotly figures,
tables, galleries). Models come from ``registry.for_slot("clip", lazy=True)`` and
``registry.for_slot("captioner", lazy=True)`` and are used only through their handles, so a
real open_clip pair plugs in without changes here.

Listeners that take an image run with ``preprocess=False`` (see
``common.image_source``): ``mmdemo.media.load_image`` says what is wrong with an
upload, never gradio's preprocessing. Gradio still moves and checks the upload first.
Result thumbnails are files written once (``common.ResultFiles``), never PIL images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.media import IMAGE_SUFFIXES
from mmdemo.tasks import image as tasks
from mmdemo.tasks import saved_index
from mmdemo.ui import match_maps
from mmdemo.ui.image_figures import heatmap_figure, map_figure, rank_figure
from mmdemo.ui.common import (MODEL_CONCURRENCY_ID, Galleries, ResultFiles, SessionValues, image_source, model_events,
                              result_or_none, thumbnail, user_errors, warn_all)

INTRO = ("Caption an image, rank captions for it, search images by text or texts by an image. "
         "The tiny bundle only knows generated scenes (coloured shapes on plain, striped, dotted or "
         "checkered backgrounds); a real CLIP/CoCa profile knows photos.")

METHODS = [("beam search", "beam"), ("greedy", "greedy"), ("top-k sampling", "top_k"),
           ("top-p (nucleus) sampling", "top_p")]
HIT_COLUMNS = ["rank", "image", "similarity", "caption"]
TEXT_COLUMNS = ["rank", "text", "similarity"]


# --------------------------------------------------------------------------- inputs


def _file_sources(payload: Any) -> list[Any]:
    """An unprocessed multi-file payload -> paths, in upload order."""
    if payload is None:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [src for src, _ in map(image_source, items) if src is not None]


def _notes(notices) -> str:
    notices = list(dict.fromkeys(notices or ()))
    return "" if not notices else "**Notes**\n" + "\n".join(f"- {n}" for n in notices)


# --------------------------------------------------------------------------- the tab


def _image_input(prefix: str, examples: list[str]) -> gr.Image:
    """An image from a file, the clipboard or the webcam, with the example scenes to pick from below it."""
    image = gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", label="Image", height=250,
                     elem_id=f"{prefix}-input")
    gr.Examples([[p] for p in examples], [image], label="Example scenes (click one)", examples_per_page=12,
                elem_id=f"{prefix}-examples")
    return image


def build(registry, settings, saved_indexes=None):
    """Lay out the Image tab inside the current gr.Blocks context. ``saved_indexes``: the
    --gallery-index files, opened (``build_demo`` opens them once for every tab)."""
    if saved_indexes is None:
        saved_indexes = saved_index.open_gallery_indexes(settings.gallery_indexes)
    saved = saved_indexes.get("image")
    galleries = Galleries(tasks.build_gallery, tasks.default_gallery_files, settings.cache_dir,
                          desc="Indexing images", prefix="mmdemo-images-",
                          saved=tasks.saved_gallery(saved) if saved is not None else None)
    thumbnails = ResultFiles(prefix="mmdemo-thumbnails-")
    examples = sorted(str(p) for p in galleries.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    searched_by_default = (f"the saved index {saved.path.name}" if saved is not None
                           else f"{len(examples)} example scenes")
    default_texts = _default_texts(galleries.folder)

    with gr.Tab("Image", id="image"):
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Caption", id="image_caption"):
                with gr.Row():
                    with gr.Column():
                        c_image = _image_input("image-caption", examples)
                        c_method = gr.Radio(METHODS, value="beam", label="Decoding")
                        with gr.Row():
                            c_beams = gr.Slider(1, 8, value=3, step=1, label="Beams")
                            c_num = gr.Slider(1, 5, value=1, step=1, label="Captions",
                                              info="With beam search, at most the number of beams.")
                        with gr.Row():
                            c_max_len = gr.Slider(4, 40, value=20, step=1, label="Max length (tokens)")
                            c_temp = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature",
                                               info="Sampling only; higher = more varied.")
                        with gr.Accordion("Sampling options", open=False):
                            with gr.Row():
                                c_top_k = gr.Slider(1, 100, value=10, step=1, label="top-k")
                                c_top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="top-p")
                                c_seed = gr.Number(0, precision=0, label="Seed")
                        c_button = gr.Button("Caption", variant="primary")
                    with gr.Column():
                        c_captions = gr.Textbox(label="Generated captions (one per line)", lines=4,
                                                interactive=False, elem_id="image-captions")
                        c_notes = gr.Markdown(elem_id="image-caption-notes")
                        gr.Markdown("### Rank captions\nScore candidate captions against the image with the CLIP "
                                    "model (a softmax over the candidates).")
                        r_candidates = gr.Textbox("", lines=5, label="Candidate captions (one per line)",
                                                  placeholder="Leave empty to rank the built-in caption bank",
                                                  elem_id="image-candidates")
                        r_button = gr.Button("Rank captions", variant="primary")
                        r_label = gr.Label(num_top_classes=5, label="Best captions (probability)",
                                           elem_id="image-rank-label")
                r_plot = gr.Plot(label="Ranked captions", elem_id="image-rank-plot")
                r_notes = gr.Markdown(elem_id="image-rank-notes")
                r_why = match_maps.image_panel("image-rank")

            with gr.Tab("Search images by text", id="image_search"):
                with gr.Row():
                    with gr.Column():
                        s_query = gr.Textbox("a red diamond", label="Describe the image", elem_id="image-query")
                        s_k = gr.Slider(1, 24, value=8, step=1, label="Results")
                        if saved is not None:
                            gr.Markdown(f"Searching {saved_index.summary(saved)}", elem_id="image-saved-index")
                        s_files = gr.File(file_count="multiple", type="filepath", label=(
                            f"Your images or a zip (optional; default: {searched_by_default}; "
                            f"up to {tasks.MAX_GALLERY_FILES}); a captions.json with them gives their captions"),
                            file_types=sorted(IMAGE_SUFFIXES) + [".zip", ".json"], elem_id="image-gallery-files")
                        s_button = gr.Button("Search images", variant="primary")
                        s_notes = gr.Markdown(elem_id="image-search-notes")
                    with gr.Column(scale=2):
                        s_gallery = gr.Gallery(label="Results (#rank · similarity · file)", columns=4, height="auto",
                                               object_fit="contain", elem_id="image-results")
                s_table = gr.Dataframe(headers=HIT_COLUMNS, interactive=False, label="Matching images",
                                       elem_id="image-results-table")
                s_map = gr.Plot(label="Embedding map", elem_id="image-map")
                # The result whose map is shown: a server-side path (a State, never a path a client sends).
                s_shown = gr.State([], time_to_live=3600)
                s_picked = gr.State(None, time_to_live=3600)
                s_why = match_maps.image_panel("image-search")
                s_api = gr.Button(visible=False)  # /search_images for API clients and agents (see search_and_keep)

            with gr.Tab("Search texts by image", id="image_texts"):
                with gr.Row():
                    with gr.Column():
                        t_image = _image_input("image-texts", examples)
                        t_texts = gr.Textbox("\n".join(default_texts), lines=8, label="Texts to search (one per line)",
                                             elem_id="image-texts")
                        t_k = gr.Slider(1, 20, value=5, step=1, label="Results")
                        t_more = gr.File(file_count="multiple", type="filepath", elem_id="image-heatmap-files",
                                         label=f"More images for the heatmap (optional, up to "
                                               f"{tasks.MAX_HEATMAP_IMAGES - 1})",
                                         file_types=sorted(IMAGE_SUFFIXES))
                        t_button = gr.Button("Search texts", variant="primary")
                    with gr.Column():
                        t_table = gr.Dataframe(headers=TEXT_COLUMNS, interactive=False, label="Closest texts",
                                               elem_id="image-texts-table")
                        t_notes = gr.Markdown(elem_id="image-texts-notes")
                t_why = match_maps.image_panel("image-texts")
                t_heatmap = gr.Plot(label="Similarity heatmap (images x texts)", elem_id="image-heatmap")

        # ------------------------------------------------------------------ handlers

        @user_errors
        def caption(image, method, num_beams, max_length, temperature, top_k, top_p, num_captions, seed):
            """Write captions for an image with the profile's captioning model (CoCa-style decoder).

            Args:
                image: the image to describe (an http(s) URL of a PNG, JPEG, WebP, GIF or BMP file).
                method: decoding: beam (beam search, default), greedy, top_k or top_p (sampling).
                num_beams: beams for beam search, 1-8.
                max_length: most tokens per caption, 4-40.
                temperature: sampling temperature (top_k/top_p only), 0.1-2; higher = more varied.
                top_k: sample among this many likeliest tokens (top_k method), 1-100.
                top_p: sample among the tokens of this much probability mass (top_p method), 0.05-1.
                num_captions: how many captions, 1-5 (with beam search at most num_beams).
                seed: random seed for sampling, so a call can be repeated.

            Returns:
                The captions, one per line, and notes (Markdown) on anything doubtful about the input.
            """
            source, name = image_source(image)
            res = tasks.caption_image(source, registry.for_slot("captioner", lazy=True), method=method,
                                      num_beams=num_beams, max_length=max_length, temperature=temperature,
                                      top_k=top_k, top_p=top_p, num_captions=num_captions, seed=seed, name=name)
            warn_all(res.notices)
            return "\n".join(res.captions), _notes(res.notices)

        @user_errors
        def rank(image, candidates):
            """Rank candidate captions for an image by CLIP similarity (softmax over the candidates).

            Args:
                image: the image (an http(s) URL of an image file).
                candidates: candidate captions, one per line; empty = the built-in caption bank.

            Returns:
                The ranked captions with probabilities ({label, confidences}), a bar chart, and notes (Markdown).
            """
            source, name = image_source(image)
            res = tasks.rank_captions(source, candidates, registry.for_slot("clip", lazy=True), name=name)
            warn_all(res.notices)
            return {r["label"]: r["score"] for r in res.ranked}, rank_figure(res), _notes(res.notices)

        searched = SessionValues()  # each session's last searched gallery, for its embedding map

        def _search(query, k, files, progress, request):
            clip = registry.for_slot("clip", lazy=True)
            with galleries.searched(files, clip, progress) as gallery:
                res = tasks.search_images(gallery, query, clip, k=k)
                # Thumbnails now: extracted zip members are gone once this returns. What a
                # result's map is drawn on: the image itself (an example scene or a saved index's
                # file stays, so the map's cosine is the search's), else its thumbnail (an
                # upload's files are gone by then).
                shown, originals, missing = [], [], []
                for i, h in enumerate(res.hits):
                    thumb = result_or_none(thumbnail, thumbnails, h["path"])
                    if thumb is None:  # a saved index's file moved away: the row stays, without a picture
                        missing.append(h["label"])
                        continue
                    shown.append((thumb, f"#{i + 1} · {h['score']:.3f} · {h['label']}"))
                    originals.append(h["path"] if not files else thumb)
            gone = saved_index.missing_files_notice(missing, "thumbnail")
            notices = gallery.notices + res.notices + ([gone] if gone else [])
            warn_all(notices)
            rows = [[i + 1, h["label"], round(h["score"], 4), h["caption"]] for i, h in enumerate(res.hits)]
            searched.put(request, gallery)
            return shown, rows, _notes(notices), originals

        @user_errors
        def search_images(query, k, files, request: gr.Request = None, progress=gr.Progress()):
            """Search images by text: rank a gallery of images by CLIP similarity to a description.

            Args:
                query: what the image shows, e.g. "a red diamond".
                k: how many images to return, 1-24.
                files: your images or zips to search (http(s) URLs); none = the app's saved index if it has
                    one (--gallery-index), else the built-in example scenes.

            Returns:
                the best images, each captioned "#rank · similarity · file"
                a table [rank, image, similarity, caption]
                notes (Markdown)
            """
            return _search(query, k, files, progress, request)[:3]

        @user_errors
        def search_and_keep(query, k, files, request: gr.Request = None, progress=gr.Progress()):
            # The page's search: also keeps the results' paths, server-side in States, for their
            # maps. Not the API endpoint: Gradio 6.31's MCP server fails on an endpoint that
            # returns a State (see SessionValues).
            shown, rows, notes, paths = _search(query, k, files, progress, request)
            return shown, rows, notes, paths, paths[0] if paths else None

        @user_errors
        def embedding_map(query, k, request: gr.Request = None):
            """Draw a 2-D map of the gallery's image embeddings with the query and its k best hits marked.

            Args:
                query: the text query, e.g. "a red diamond".
                k: how many hits to mark, 1-24.

            Returns:
                A plotly figure of the map (the gallery last searched in the session, else the saved index
                or the example scenes); a gallery of thousands is mapped from a seeded sample.
            """
            clip = registry.for_slot("clip", lazy=True)
            gallery = searched.get(request)
            if gallery is None or gallery.model_id != clip.model_id:
                gallery = galleries.fallback(clip)
            hits = tasks.search_images(gallery, query, clip, k=k).hits
            m = tasks.embedding_map(gallery, clip, query_text=query)
            return map_figure(m, [h["label"] for h in hits])

        @user_errors
        def search_texts(image, texts, k):
            """Search texts by image: rank a list of texts by CLIP similarity to an image.

            Args:
                image: the image (an http(s) URL of an image file).
                texts: the texts to rank, one per line.
                k: how many texts to return, 1-20.

            Returns:
                A table [rank, text, similarity] of the closest texts, and notes (Markdown).
            """
            source, name = image_source(image)
            res = tasks.search_texts(source, texts, registry.for_slot("clip", lazy=True), k=k, name=name)
            warn_all(res.notices)
            return [[i + 1, h["label"], round(h["score"], 4)] for i, h in enumerate(res.hits)], _notes(res.notices)

        @user_errors
        def heatmap(image, more, texts):
            """Similarity heatmap of images x texts (CLIP cosine similarity).

            Args:
                image: the first image (an http(s) URL of an image file).
                more: more images (http(s) URLs), or none.
                texts: the texts, one per line.

            Returns:
                A plotly heatmap, one row per image and one column per text.
            """
            source, _ = image_source(image)
            extra = _file_sources(more)
            h = tasks.similarity_heatmap(([source] if source is not None else []) + extra, texts,
                                         registry.for_slot("clip", lazy=True))
            # The search already told about the main image and the texts; add what concerns the others.
            names = {Path(p).name for p in extra if isinstance(p, (str, Path))}
            warn_all([n for n in h.notices if getattr(n, "code", None) == "files_unreadable"
                      or getattr(n, "subject", None) in names])
            return heatmap_figure(h)

        explain = match_maps.image_explainer(registry, thumbnails)
        caption_inputs = [c_image, c_method, c_beams, c_max_len, c_temp, c_top_k, c_top_p, c_num, c_seed]
        c_button.click(caption, caption_inputs, [c_captions, c_notes], api_name="caption",
                       concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        ranking = r_button.click(rank, [c_image, r_candidates], [r_label, r_plot, r_notes], api_name="rank_captions",
                                 concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        match_maps.listen_image(r_why, explain, (ranking, [r_label]), c_image, match_maps.ranked_labels, contrast=True,
                                api_name="explain_image_text")

        searches = model_events([s_button.click, s_query.submit], search_and_keep, [s_query, s_k, s_files],
                                [s_gallery, s_table, s_notes, s_shown, s_picked], api_name=False)
        s_api.click(search_images, [s_query, s_k, s_files], [s_gallery, s_table, s_notes], api_name="search_images",
                    concurrency_id=MODEL_CONCURRENCY_ID)
        # The query's map over the best result, or over the result the user clicks.
        match_maps.listen_image(s_why, explain, (searches, [s_query]), s_picked, lambda q: [q])
        s_gallery.select(_picked_result, s_shown, s_picked, api_name=False, queue=False).success(
            explain, [s_picked, s_why.text, s_why.method], [s_why.picture, s_why.notes], api_name=False,
            concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        model_events([event.success for event in searches], embedding_map, [s_query, s_k], [s_map],
                     api_name="embedding_map")

        text_search = t_button.click(search_texts, [t_image, t_texts, t_k], [t_table, t_notes], api_name="search_texts",
                                     concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        text_search.success(heatmap, [t_image, t_more, t_texts], [t_heatmap], api_name="similarity_heatmap",
                            concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        match_maps.listen_image(t_why, explain, (text_search, [t_table]), t_image, match_maps.table_texts)
    return thumbnails.close  # build_demo runs it when the app closes


def _picked_result(paths, evt: gr.SelectData):
    return paths[evt.index] if paths and 0 <= evt.index < len(paths) else None


def _default_texts(folder: Path) -> list[str]:
    """The example scenes' own captions: the texts a search by an example image should find."""
    captions = list(dict.fromkeys(tasks.read_captions(folder).values()))
    return captions[: tasks.MAX_CANDIDATES] or ["a red circle", "a blue star", "a green square", "a yellow triangle"]
