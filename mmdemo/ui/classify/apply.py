"""Classify with a head: one example through a fusion head, with what each input adds
and what the head looked at.

The listener runs with ``preprocess=False``, as the Image tab's do: uploads reach the
task layer's loaders as paths, so a bad or oversized image gets the same message
there as everywhere else (see ``common.image_source``)."""

from __future__ import annotations

import gradio as gr

from mmdemo.tasks import classify as tasks
from mmdemo.tasks.classify.heads import registry_head_summary
from mmdemo.ui.classify.context import ClassifyContext, default_head
from mmdemo.ui.classify.figures import ablation_figure, explanation_figure
from mmdemo.ui import match_maps
from mmdemo.errors import MMDemoError
from mmdemo.ui.common import (MODEL_CONCURRENCY_ID, ResultFiles, file_path, image_source, notes_markdown,
                              user_errors, warn_all)


def render(ctx: ClassifyContext) -> dict:
    names = ctx.fusion_names()
    with gr.Row():
        with gr.Column():
            head = gr.Dropdown(names, value=default_head(names, "scene_qa"), label="Fusion head",
                               elem_id="classify-head",
                               allow_custom_value=True,  # heads trained after page load; checked by name
                               info="Bundled heads are named tiny-head-<task>-<kind>; yours appear here "
                                    "after training or upload.")
            # What the picked head reads and how good it is (accuracy vs chance), before anyone trusts it.
            card = gr.Markdown(_default_card(ctx, default_head(names, "scene_qa")), elem_id="classify-head-card")
            image = gr.Image(type="filepath", label="Image", elem_id="classify-image", height=220)
            text = gr.Textbox(label="Text", placeholder="is there a red star?", elem_id="classify-text")
            audio = gr.Audio(type="filepath", label="Audio (for heads that use it)", elem_id="classify-audio")
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            # Beside the inputs, not under the fold: a click fills them, Classify answers.
            examples_at = gr.Column()
            label = gr.Label(num_top_classes=10, label="Prediction", elem_id="classify-label")
            # What the generator says the answer is, for a clicked example; cleared when an input changes.
            expected = gr.Textbox(label="Expected answer (generated example)", interactive=False,
                                  elem_id="classify-expected")
            info = gr.Markdown(elem_id="classify-info")
    with examples_at:
        gr.Examples([[default_head(names, e["task"]), e["image"], e["text"], e["audio"], e["label"]]
                     for e in ctx.examples], [head, image, text, audio, expected],
                    label="Generated examples with their expected answers (click one, then Classify)",
                    examples_per_page=8)
    with gr.Row():
        ablation = gr.Plot(label="Modality contribution", elem_id="classify-ablation")
        explain = gr.Plot(label="What the head looked at", elem_id="classify-explain")
    # The encoder beneath the head, not the head's decision: said in the title.
    why = match_maps.image_panel("classify", "Where the CLIP beneath the head matched the text in the image "
                                             "(not the head's own decision)")
    return {"head": head, "card": card, "image": image, "text": text, "audio": audio, "button": button,
            "label": label, "expected": expected, "info": info, "ablation": ablation, "explain": explain, "why": why}


def _default_card(ctx: ClassifyContext, name: str | None) -> str:
    """The default head's card, from its file's header (building the app loads no model)."""
    if not name:
        return ""
    try:
        return tasks.describe_head(registry_head_summary(ctx.registry, name))
    except MMDemoError as exc:
        return f"⚠️ {exc}"


def listen(ctx: ClassifyContext, ui: dict, maps: ResultFiles) -> None:
    registry = ctx.registry

    @user_errors
    def classify(head, image, text, audio=None, request: gr.Request = None):
        """Classify an image + text (+ audio) example with a trained fusion head.

        Args:
            head: the fusion head's name, e.g. "tiny-head-scene_qa-attention" (the enum lists them).
            image: the image (an http(s) URL of an image file).
            text: the text, e.g. a question about the image.
            audio: a sound (an http(s) URL of an audio file), for heads that take audio; else none.

        Returns:
            the labels with probabilities ({label, confidences})
            a summary (Markdown), with how the top label's probability changes when an input is removed
            charts of each modality's contribution and of the head's weights, gates or attention
        """
        handle = ctx.resolve_head(head, request)  # the sender's own head of that name, else the registry's
        res = tasks.classify(handle, image_source(image)[0], text, file_path(audio),
                             registry.for_slot("clip", lazy=True), ctx.audio_for("audio" in handle.modalities),
                             token_tower=registry.for_slot("tokens", lazy=True))
        warn_all(res.notices)
        top = res.labels[0]
        drops = ", ".join(f"without {a['modality']} {-a['top_drop']:+.1%}" for a in res.ablation)
        article = "an" if res.kind[0] in "aeiou" else "a"
        info = (f"**{top['label']}** ({top['score']:.1%}) from **{res.head}**, {article} {res.kind} head over "
                f"{' + '.join(res.modalities)}.\n\nChange in P({top['label']}) when an input is removed: {drops}."
                + "\n\n" + tasks.describe_head(handle) + notes_markdown(
                    [n for n in res.notices if getattr(n, "code", None) != "head_at_chance"]))
        return {r["label"]: r["score"] for r in res.labels}, info, ablation_figure(res), explanation_figure(res)

    def head_choices(request: gr.Request):
        return gr.update(choices=ctx.fusion_names(request))

    def head_card(head, request: gr.Request):
        if not (head or "").strip():
            return ""
        try:
            return tasks.describe_head(ctx.heads_of(request).summary(head))
        except MMDemoError as exc:  # a head that does not load says why here; Classify raises it
            return f"⚠️ {exc}"
        except Exception:  # noqa: BLE001 - odd metadata in someone's file: the card says so, the page lives
            return "⚠️ This head's file has metadata this version cannot read."

    # An input the user changes is no longer the generated example: its answer no longer applies.
    for event in (ui["image"].upload, ui["image"].clear, ui["text"].input, ui["audio"].upload, ui["audio"].clear):
        event(lambda: "", None, ui["expected"], api_name=False, queue=False)
    ui["head"].change(head_card, ui["head"], ui["card"], api_name=False, queue=False)
    # Heads trained or uploaded in another tab of the same login appear when the list is opened.
    ui["head"].focus(head_choices, None, ui["head"], api_name=False, queue=False)
    classified = ui["button"].click(classify, [ui["head"], ui["image"], ui["text"], ui["audio"]],
                                    [ui["label"], ui["info"], ui["ablation"], ui["explain"]],
                                    api_name="classify", concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
    # Where in the image the CLIP matched the example's text.
    match_maps.listen_image(ui["why"], match_maps.image_explainer(registry, maps), (classified, [ui["text"]]),
                            ui["image"], lambda text: [text] if (text or "").strip() else [])
