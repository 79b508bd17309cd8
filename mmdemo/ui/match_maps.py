""""Why it matched" panels: where in an image a text matched (Image and Classify tabs)
and when and in which band a sound matched (Audio tab).

Each panel is a text picker, (for images) a method, and the map; ``listen_*`` wire it
after a tab's own scoring event, so the map of the best answer appears beside the
score, and again whenever the user picks another text or method. The maps come from
``mmdemo.tasks.match_maps``; this module only draws them and hands out files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import gradio as gr
import numpy as np

from mmdemo.hashing import content_hash
from mmdemo.tasks import match_maps as maps
from mmdemo.ui.common import MODEL_CONCURRENCY_ID, ResultFiles, image_source, user_errors, warn_all

METHOD_CHOICES = [(f"{desc} ({key})", key) for key, desc in maps.IMAGE_METHODS.items()]
CHOICE_NOTE = {"tokens": "Patch-token similarity is cheaper and less precise (on the tiny model its peak finds the "
                         "named object 0.67 of the time, the gradient method's 0.92)."}
CONTRAST_TEXTS = 20  # the gradient map explains the chosen text against the next best ones


def _notes(res, what: str) -> str:
    lines = [f"**{what}** cosine similarity {res.similarity:.3f}."]
    lines += [f"- {n}" for n in dict.fromkeys(res.notices or ())]
    return "\n".join(lines)


@dataclass
class ImagePanel:
    text: gr.Dropdown
    method: gr.Radio
    button: gr.Button
    picture: gr.Image
    notes: gr.Markdown


def image_panel(prefix: str, title: str = "Why it matched: where in the image") -> ImagePanel:
    """Lay out a panel (inside the current Blocks context)."""
    with gr.Accordion(title, open=True, elem_id=f"{prefix}-why"):
        with gr.Row():
            text = gr.Dropdown([], value=None, allow_custom_value=True, label="Text to show",
                               info="The best match is shown first; pick another or type one.",
                               elem_id=f"{prefix}-why-text")
            method = gr.Radio(METHOD_CHOICES, value="chefer", label="Method", elem_id=f"{prefix}-why-method")
        button = gr.Button("Show map", elem_id=f"{prefix}-why-button")
        picture = gr.Image(type="filepath", interactive=False, height=320, show_label=True,
                           label="Map over the image as the model sees it (bright = matched; ring = peak)",
                           elem_id=f"{prefix}-why-map")
        notes = gr.Markdown(elem_id=f"{prefix}-why-notes")
    return ImagePanel(text, method, button, picture, notes)


def image_explainer(registry, results: ResultFiles):
    """The handler behind ``/explain_image_text``: (image, text, method, contrast) -> (map file, notes)."""

    @user_errors
    def explain_image_text(image, text, method="chefer", contrast=""):
        """Show where in an image a CLIP model matched a text.

        Args:
            image: the image file.
            text: the text to locate in the image (e.g. "a red star").
            method: "chefer" (gradient-weighted attention) or "tokens" (patch-token similarity).
            contrast: other candidate texts, one per line (optional); the chefer map then shows where the image matched this text rather than those.

        Returns:
            The image as the model sees it with the map over it (bright = matched, a ring at
            the peak), and notes with the image-text cosine similarity.
        """
        source, name = image_source(image)
        others = [t for t in str(contrast or "").splitlines() if t.strip()]
        res = maps.explain_image_text(source, text, registry.for_slot("clip", lazy=True), method=method or "chefer",
                                      contrast=others, name=name)
        warn_all(res.notices)
        buf = io.BytesIO()
        maps.overlay(res).save(buf, format="PNG")
        png = buf.getvalue()
        path = results.get(b"why-map:" + content_hash(png).encode(), ".png", lambda f: f.write(png))
        notes = _notes(res, f"{res.method}: '{res.text}'")
        return path, notes + (f"\n\n{CHOICE_NOTE[res.method]}" if res.method in CHOICE_NOTE else "")

    return explain_image_text


def ranked_labels(label) -> list[str]:
    """A gr.Label's value ({label: confidence}, or its payload) -> its labels, best first."""
    if not isinstance(label, dict):
        return []
    if isinstance(label.get("confidences"), list):
        pairs = [(c.get("label"), c.get("confidence", 0)) for c in label["confidences"]]
    else:
        pairs = list(label.items())
    return [str(k) for k, _ in sorted(pairs, key=lambda kv: -float(kv[1] or 0))]


def table_texts(table) -> list[str]:
    """The "text" column of a results table (a DataFrame, best first)."""
    try:
        return [str(t) for t in table["text"].tolist()]
    except (KeyError, TypeError, AttributeError):
        return []


def _choices(texts, contrast: bool):
    texts = [str(t) for t in texts if str(t).strip()]
    top = texts[0] if texts else None
    return gr.update(choices=texts, value=top), "\n".join(texts[1:CONTRAST_TEXTS + 1]) if contrast else ""


def listen_image(panel: ImagePanel, explain, after, image, texts_of, *, contrast: bool = False,
                 api_name: str | bool = False) -> None:
    """After ``after`` = (scoring event(s), its outputs) succeeds, fill the picker with
    ``texts_of(*outputs)`` (best first) and draw the best one's map; redraw when the
    user picks another text or method, or presses the panel's button (``api_name``: its
    endpoint). ``image``: the component holding the image explained."""
    # The other candidates, for the gradient method's contrast; a hidden textbox rather
    # than a State so that API callers of ``api_name`` can pass their own.
    others = gr.Textbox("", visible=False)

    def fill(*outputs):
        return _choices(texts_of(*outputs), contrast)

    run = dict(fn=explain, inputs=[image, panel.text, panel.method, others], outputs=[panel.picture, panel.notes],
               api_name=False, concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
    def after_scoring(image_, text, *rest):
        # Nothing to show (a head given no text, a zero-shot score without an image) is no
        # error after a score.
        return explain(image_, text, *rest) if (text or "").strip() and image_ else (None, "")

    events = after[0] if isinstance(after[0], (list, tuple)) else [after[0]]
    for event in events:
        event.success(fill, after[1], [panel.text, others], api_name=False, queue=False).success(
            **{**run, "fn": after_scoring})
    panel.text.input(**run)
    panel.button.click(**{**run, "api_name": api_name})
    panel.method.input(**run)


# --------------------------------------------------------------------------- audio


def audio_figure(res: maps.AudioMatchMap):
    """The cells' map over (time, band), with the band profile beside it (same bands, same
    rows) and the time profile below it (same time axis)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def mids(edges):
        edges = np.asarray(edges, np.float64)
        return (edges[:-1] + edges[1:]) / 2

    bands = [f"{a:.0f}-{b:.0f} Hz" for a, b in zip(res.grid_band_edges[:-1], res.grid_band_edges[1:])]
    fig = make_subplots(rows=2, cols=2, column_widths=[0.8, 0.2], row_heights=[0.7, 0.3],
                        horizontal_spacing=0.02, vertical_spacing=0.1, shared_xaxes="columns",
                        shared_yaxes="rows", subplot_titles=("time x band", "by band", "by time", ""))
    fig.add_trace(go.Heatmap(z=res.grid, x=mids(res.grid_time_edges), y=bands, colorscale="Inferno",
                             colorbar=dict(title="drop", x=1.0, xanchor="left", len=0.65, y=0.68),
                             hovertemplate="%{x:.2f} s · %{y}<br>cosine drop %{z:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=res.band_profile, y=bands, orientation="h", marker_color="#d62728",
                         hovertemplate="%{y}<br>cosine drop %{x:.3f}<extra></extra>"), 1, 2)
    fig.add_trace(go.Bar(x=mids(res.time_edges), y=res.time_profile, marker_color="#1f77b4",
                         width=float(np.diff(res.time_edges).mean()) * 0.9,
                         hovertemplate="%{x:.2f} s<br>cosine drop %{y:.3f}<extra></extra>"), 2, 1)
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_layout(title=f"Where '{res.text}' matched: how much the cosine ({res.similarity:.3f}) drops when "
                            f"each part of {res.window[0]:.1f}-{res.window[1]:.1f} s is silenced",
                      height=480, showlegend=False, margin=dict(l=20, r=70, t=70, b=40))
    return fig


@dataclass
class AudioPanel:
    text: gr.Dropdown
    button: gr.Button
    plot: gr.Plot
    notes: gr.Markdown


def audio_panel(prefix: str) -> AudioPanel:
    with gr.Accordion("Why it matched: when, and in which band", open=True, elem_id=f"{prefix}-why"):
        text = gr.Dropdown([], value=None, allow_custom_value=True, label="Text to show",
                           info="The best match is shown first; pick another or type one.",
                           elem_id=f"{prefix}-why-text")
        button = gr.Button("Show map", elem_id=f"{prefix}-why-button")
        plot = gr.Plot(label="Occlusion map", elem_id=f"{prefix}-why-map")
        notes = gr.Markdown(elem_id=f"{prefix}-why-notes")
    return AudioPanel(text, button, plot, notes)


def audio_explainer(registry):
    @user_errors
    def explain_audio_text(audio, text, templates=""):
        """Show when in a clip (and in which frequency band) an audio-text model matched a text.

        Args:
            audio: the audio file.
            text: the text to locate in the clip (e.g. "a rising chirp").
            templates: the prompt templates the text was scored with, one per line with {} for the text (optional).

        Returns:
            A plot of how much the clip's cosine similarity with the text drops when each time
            slice, frequency band and time-band cell of its best-matching window is silenced,
            and notes with that similarity.
        """
        from mmdemo.ui.common import file_path

        res = maps.explain_audio_text(file_path(audio), text, registry.for_slot("audio", lazy=True),
                                      templates=templates)
        warn_all(res.notices)
        return audio_figure(res), _notes(res, f"'{res.text}' ({res.window[0]:.1f}-{res.window[1]:.1f} s)")

    return explain_audio_text


def listen_audio(panel: AudioPanel, explain, after, audio, texts_of, *, templates=None,
                 api_name: str | bool = False) -> None:
    """As :func:`listen_image`, for a clip; ``templates``: the component holding the prompt
    templates the score used (the map then explains the same text embedding)."""
    def fill(*outputs):
        return _choices(texts_of(*outputs), False)[0]

    templates = templates if templates is not None else gr.Textbox("", visible=False)
    run = dict(fn=explain, inputs=[audio, panel.text, templates], outputs=[panel.plot, panel.notes],
               api_name=False, concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)

    def after_scoring(audio_, text, templates_):
        # Nothing to explain without a clip: a search whose best sound's file is gone shows none.
        return explain(audio_, text, templates_) if (text or "").strip() and audio_ else (None, "")

    for event in after[0] if isinstance(after[0], (list, tuple)) else [after[0]]:
        event.success(fill, after[1], [panel.text], api_name=False, queue=False).success(
            **{**run, "fn": after_scoring})
    panel.text.input(**run)
    panel.button.click(**{**run, "api_name": api_name})
