"""The Compare tab: one input through several models, or through every fusion head, side by side.

Handlers call :mod:`mmdemo.tasks.compare` and only format its rows (a table, a bar chart,
the rows as JSON for API clients). Image listeners run with ``preprocess=False`` (see
``common.image_source``), so a bad upload gets the media loader's message.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from mmdemo.registry import Registry
from mmdemo.tasks import compare as tasks
from mmdemo.tasks.classify import MODALITIES, generated_examples
from mmdemo.tasks.classify.heads import HeadStore, OwnerHeads, owner_of
from mmdemo.ui.common import MODEL_CONCURRENCY_ID, file_path, image_source, user_errors, warn_all

INTRO = ("One input through several models or through every fusion head, **side by side**: one table of "
         "answers and scores. A model that cannot answer (not downloaded, the wrong kind) is a row that says why.")
MODES = [("Rank candidate texts (CLIP, CoCa)", "rank"), ("Caption (captioners)", "caption")]
DEFAULT_TEXTS = "a red circle\na blue star\na green square\na yellow triangle"


def clip_capable(registry: Registry) -> list[str]:
    """The entries that can rank texts for an image: CLIPs and captioners (CoCa is a CLIP too)."""
    return [n for n in registry.names() if registry.catalog.entry(n).kind in tasks.CLIP_KINDS]


def default_models(registry: Registry, choices: list[str]) -> list[str]:
    """The active profile's CLIP and captioner, else the first two CLIP-capable entries."""
    p = registry.profile
    picked = [n for n in dict.fromkeys((p.clip, p.captioner)) if n in choices]
    return picked if len(picked) >= 2 else choices[:2]


def heads_of(store: HeadStore, request) -> OwnerHeads:
    """The heads the sender sees: the registry's and their own. The owner is named as the
    Classify tab names it (``ClassifyContext.heads_of``): a login, else the browser session;
    this tab only reads heads, so it makes no folder that would need removing."""
    return store.of(owner_of(request))


# --------------------------------------------------------------------------- tables and charts


def _pct(p) -> float | str:
    return "" if p is None else round(float(p), 4)


def _secs(s) -> float | str:
    return "" if s is None else round(float(s), 3)


def models_table(res: tasks.ModelComparison):
    import pandas as pd

    if res.mode == "rank":
        headers = ["model", "kind", "answer", "probability", *res.texts, "load s", "run s", "error"]
        data = [[r["model"], r["kind"] or "", r["answer"] or "", _pct(r["score"]),
                 *[_pct(r["scores"].get(t)) for t in res.texts], _secs(r["load_seconds"]), _secs(r["seconds"]),
                 r["error"] or ""] for r in res.rows]
    else:
        headers = ["model", "kind", "caption", "load s", "run s", "error"]
        data = [[r["model"], r["kind"] or "", r["answer"] or "", _secs(r["load_seconds"]), _secs(r["seconds"]),
                 r["error"] or ""] for r in res.rows]
    return pd.DataFrame(data, columns=headers)


def models_figure(res: tasks.ModelComparison):
    """Each model's probability for every candidate, grouped by candidate (rank mode only)."""
    import plotly.graph_objects as go

    ok = [r for r in res.rows if r["ok"]]
    if res.mode != "rank" or not ok:
        return None
    fig = go.Figure([go.Bar(name=r["model"], x=res.texts, y=[r["scores"][t] for t in res.texts],
                            hovertemplate=f"{r['model']}<br>%{{x}}: %{{y:.1%}}<extra></extra>") for r in ok])
    fig.update_layout(barmode="group", title="Each model's probability for every candidate text",
                      yaxis=dict(title="probability", range=[0, 1], tickformat=".0%"), height=380,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def _own_view(e: dict | None) -> str:
    if not e or e.get("type") in (None, "none"):
        return ""
    return f"{e['type'].replace('_', ' ')}: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(e["names"], e["values"]))


def heads_table(res: tasks.HeadComparison):
    import pandas as pd

    headers = ["head", "kind", "inputs", "held-out accuracy", "prediction", "probability",
               *[f"{m} contribution" for m in MODALITIES], "head's own view", "status"]
    data = [[r["head"], r["kind"] or "", " + ".join(r["modalities"]), r.get("quality") or "",
             r["prediction"] or "", _pct(r["probability"]),
             *[_pct(r["contributions"].get(m)) for m in MODALITIES], _own_view(r["explanation"]),
             "ok" if r["ok"] else r["error"]] for r in res.rows]
    return pd.DataFrame(data, columns=headers)


def heads_figure(res: tasks.HeadComparison):
    """Per head, how much the predicted label's probability drops without each input."""
    import plotly.graph_objects as go

    ok = [r for r in res.rows if r["ok"]]
    if not ok:
        return None
    fig = go.Figure()
    for m in MODALITIES:
        if any(m in r["contributions"] for r in ok):
            fig.add_trace(go.Bar(name=f"without {m}", x=[r["head"] for r in ok],
                                 y=[r["contributions"].get(m) for r in ok],
                                 hovertemplate=f"%{{x}}<br>without {m}: %{{y:+.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", title="Per-modality contribution: drop in P(predicted label) without each input",
                      yaxis=dict(title="probability drop", tickformat=".0%"), height=400,
                      margin=dict(l=50, r=20, t=50, b=120), legend=dict(orientation="h", y=1.08))
    return fig


def _notes(summary: str, res) -> str:
    own = [f"- **{r.get('model') or r.get('head')}**: {n}" for r in res.rows for n in r["notices"]]
    shared = [f"- {n}" for n in res.notices]
    lines = shared + own
    return summary + ("\n\n**Notes**\n" + "\n".join(lines) if lines else "")


def heads_summary(res: tasks.HeadComparison) -> str:
    ok = [r for r in res.rows if r["ok"]]
    skipped = len(res.rows) - len(ok)
    text = f"**{len(ok)}** of {len(res.rows)} heads ran on {' + '.join(res.modalities)}"
    text += f"; {skipped} could not (see their status)." if skipped else "."
    for task in dict.fromkeys(r["task"] for r in ok):
        votes = [r["prediction"] for r in ok if r["task"] == task]
        best = max(dict.fromkeys(votes), key=votes.count)
        text += f"\n\n{task or 'other heads'}: {votes.count(best)} of {len(votes)} say **{best}**."
    return text


# --------------------------------------------------------------------------- the tab


def _examples(cache_dir: Path) -> tuple[list[dict], Path | None]:
    """The generated examples the Classify tab shows (same seeded files); in a temp
    folder of this tab's own when the cache is read-only."""
    try:
        return generated_examples(Path(cache_dir) / "examples" / "classify"), None
    except OSError:
        temp = Path(tempfile.mkdtemp(prefix="mmdemo-compare-"))
        return generated_examples(temp), temp


def build(registry: Registry, settings=None):
    """Lay out the Compare tab; returns what removes its temp folder when the app closes."""
    from mmdemo.settings import Settings

    settings = settings or Settings()
    store = HeadStore(registry, settings.cache_dir)
    examples, temp = _examples(settings.cache_dir)
    choices = clip_capable(registry)

    with gr.Tab("Compare", id="compare"):
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Models", id="compare_models"):
                with gr.Row():
                    with gr.Column(scale=2):
                        m_models = gr.Dropdown(
                            choices, value=default_models(registry, choices), multiselect=True,
                            allow_custom_value=True,  # an API client's unknown name is a row saying so
                            label=f"Models ({tasks.MIN_MODELS} to {tasks.MAX_MODELS})", elem_id="compare-models",
                            info="CLIP-capable entries of the registry; real ones download on first use.")
                        m_mode = gr.Radio(MODES, value="rank", label="Compare", elem_id="compare-mode")
                        m_texts = gr.Textbox(DEFAULT_TEXTS, lines=5, elem_id="compare-texts",
                                             label=f"Candidate texts (one per line, up to {tasks.MAX_COMPARE_TEXTS}; "
                                                   "rank mode)")
                    with gr.Column(scale=1):
                        m_image = gr.Image(sources=["upload", "clipboard"], type="filepath", label="Image",
                                           height=260, elem_id="compare-image")
                m_button = gr.Button("Compare models", variant="primary")
                # Full width: one column per candidate text.
                m_summary = gr.Markdown(elem_id="compare-summary")
                m_table = gr.Dataframe(headers=["model", "kind", "answer", "probability"], interactive=False,
                                       wrap=True, label="Side by side", elem_id="compare-table")
                m_plot = gr.Plot(label="Probabilities", elem_id="compare-plot")
                with gr.Accordion("All results (JSON)", open=False):
                    m_json = gr.JSON(elem_id="compare-json")
                gr.Examples([[e["image"], "\n".join(e["zero_shot_labels"])] for e in examples
                             if e["task"] == "scene_qa"], [m_image, m_texts],
                            label="Generated scenes with candidate texts (click one, then Compare)")

            with gr.Tab("Every fusion head", id="compare_heads"):
                with gr.Row():
                    with gr.Column(scale=1):
                        h_image = gr.Image(sources=["upload", "clipboard"], type="filepath", label="Image",
                                           height=220, elem_id="compare-heads-image")
                    with gr.Column(scale=2):
                        h_text = gr.Textbox(label="Text", placeholder="is there a red star?",
                                            elem_id="compare-heads-text")
                        h_audio = gr.Audio(type="filepath", label="Audio (for heads that use it)",
                                           elem_id="compare-heads-audio")
                        h_heads = gr.Dropdown(
                            registry.names(kind="fusion"), value=[], multiselect=True, allow_custom_value=True,
                            label="Heads (leave empty for every head)", elem_id="compare-heads-pick",
                            info="Bundled heads and yours (trained or uploaded in Classify, this session).")
                h_button = gr.Button("Compare heads", variant="primary")
                h_summary = gr.Markdown(elem_id="compare-heads-summary")
                h_table = gr.Dataframe(headers=["head", "kind", "inputs", "prediction", "probability"],
                                       interactive=False, wrap=True, label="Every head, side by side",
                                       elem_id="compare-heads-table")
                gr.Markdown("An input's **contribution** is how much the predicted label's probability drops "
                            "when that input is removed (its features zeroed), as in the Classify tab; the head's "
                            "own view is its learned weights, gates or attention, where it has them.")
                h_plot = gr.Plot(label="Per-modality contribution", elem_id="compare-heads-plot")
                with gr.Accordion("All results (JSON)", open=False):
                    h_json = gr.JSON(elem_id="compare-heads-json")
                gr.Examples([[e["image"], e["text"], e["audio"]] for e in examples], [h_image, h_text, h_audio],
                            label="Generated examples (click one, then Compare heads)")

        @user_errors
        def compare_models(image, texts, models, mode, progress=gr.Progress()):
            """Compare models side by side: one image through 2-4 CLIP or CoCa models of the registry.

            Args:
                image: the image (a file or http(s) URL).
                texts: candidate texts, one per line (up to 20), that every model ranks; ignored for captions.
                models: 2 to 4 registry entry names, e.g. ["tiny-clip", "tiny-coca"].
                mode: "rank" (each model's probability for every candidate) or "caption" (captioners write one).

            Returns:
                a summary (Markdown): whether the models agree
                a table, one row per model: answer, probability, one column per candidate, seconds, error
                a bar chart of each model's probabilities (rank mode)
                every row as JSON (scores, similarities, captions, errors)
            """
            source, name = image_source(image)
            res = tasks.compare_models(registry, models, source, texts, mode=mode, name=name,
                                       progress=lambda done, total, model: progress((done, total),
                                                                                    desc=f"Running {model}"))
            warn_all(res.notices)
            return _notes(res.summary(), res), models_table(res), models_figure(res), res.to_dict()

        @user_errors
        def compare_heads(image, text, audio, heads, request: gr.Request):
            """Compare fusion heads side by side: one image + text (+ sound) through every head, or those picked.

            Args:
                image: the image (a file or http(s) URL), or none.
                text: the text, e.g. a question "is there a red star?".
                audio: a sound (a file or http(s) URL) for heads that use audio, or none.
                heads: head names to compare; an empty list compares every head.

            Returns:
                a summary (Markdown): how many heads ran and what most of them say
                a table, one row per head: prediction, probability, each input's contribution, the head's own view
                a chart of each input's contribution per head
                every row as JSON (labels, contributions, explanations, reasons a head did not run)
            """
            audio = file_path(audio)
            audio_model = registry.for_slot("audio", lazy=True) if audio and registry.profile.audio else None
            res = tasks.compare_heads(heads_of(store, request), image_source(image)[0], text, audio,
                                      registry.for_slot("clip", lazy=True), audio_model, names=heads,
                                      token_tower=registry.for_slot("tokens", lazy=True))
            warn_all(res.notices)
            return _notes(heads_summary(res), res), heads_table(res), heads_figure(res), res.to_dict()

        def head_choices(request: gr.Request):
            return gr.update(choices=heads_of(store, request).names())

        m_button.click(compare_models, [m_image, m_texts, m_models, m_mode], [m_summary, m_table, m_plot, m_json],
                       api_name="compare_models", concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        h_button.click(compare_heads, [h_image, h_text, h_audio, h_heads], [h_summary, h_table, h_plot, h_json],
                       api_name="compare_heads", concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
        # Heads trained or uploaded in the Classify tab appear when the list is opened.
        h_heads.focus(head_choices, None, h_heads, api_name=False, queue=False)

    def close() -> None:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

    return close
