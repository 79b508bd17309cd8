"""Zero-shot: score typed labels against a weighted mix of the inputs' embeddings.

Listeners run with ``preprocess=False`` (see ``common.image_source``): a bad or
oversized image gets the media loader's message, as on every tab."""

from __future__ import annotations

import gradio as gr

from mmdemo.tasks import classify as tasks
from mmdemo.tasks import prompts
from mmdemo.ui.classify.context import ClassifyContext
from mmdemo.ui.classify.figures import zero_shot_figure
from mmdemo.ui import match_maps
from mmdemo.ui.common import MODEL_CONCURRENCY_ID, ResultFiles, file_path, image_source, user_errors, warn_all


def render(ctx: ClassifyContext) -> dict:
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label="Image", elem_id="zs-image", height=220)
            text = gr.Textbox(label="Text (optional)", elem_id="zs-text")
            audio = gr.Audio(type="filepath", label="Audio (optional)", elem_id="zs-audio")
            labels = gr.Textbox("red circle\nblue star\ngreen square\nyellow triangle", lines=5,
                                label="Labels (one per line)", elem_id="zs-labels")
            template = gr.Textbox(tasks.DEFAULT_TEMPLATE, label="Prompt template",
                                  info="{} stands for each label, e.g. 'a photo of {}'.")
            # A prompt ensemble (CLIP paper, 3.1.4); empty keeps the single template above.
            template_set = gr.Dropdown(prompts.builtin_choices("image"), value=None, label="Built-in template set",
                                       elem_id="zs-template-set",
                                       info="Fills the ensemble below; the tiny bundle reads only its own words.")
            templates = gr.Textbox("", lines=3, label="Prompt ensemble (optional, one template per line)",
                                   elem_id="zs-templates", placeholder="a photo of a small {}\na photo of a large {}",
                                   info="Each label is scored by the average of its templates' embeddings; "
                                        "these replace the single template.")
            with gr.Row():
                weights = [gr.Slider(0, 1, value=v, step=0.05, label=f"{m} weight", elem_id=f"zs-w-{m}")
                           for m, v in (("image", 1.0), ("text", 0.5), ("audio", 0.5))]
            button = gr.Button("Score labels", variant="primary")
        with gr.Column():
            label = gr.Label(num_top_classes=10, label="Fused prediction", elem_id="zs-label")
            info = gr.Markdown(elem_id="zs-info")
    plot = gr.Plot(label="Each modality alone", elem_id="zs-plot")
    why = match_maps.image_panel("zs")
    gr.Examples([[e["image"], "", "\n".join(e["zero_shot_labels"])] for e in ctx.examples if e["task"] == "scene_qa"],
                [image, text, labels], label="Generated scenes with candidate labels")
    return {"image": image, "text": text, "audio": audio, "labels": labels, "template": template,
            "template_set": template_set, "templates": templates,
            "weights": weights, "button": button, "label": label, "info": info, "plot": plot, "why": why}


def _prompts(label, template) -> list[str]:
    """The ranked labels as the image was scored against them (the single template)."""
    template = template if isinstance(template, str) and template.count("{}") == 1 else "{}"
    return [template.format(name) for name in match_maps.ranked_labels(label)]


def listen(ctx: ClassifyContext, ui: dict, maps: ResultFiles) -> None:
    registry = ctx.registry

    @user_errors
    def zero_shot(image=None, text="", audio=None, labels="", template=tasks.DEFAULT_TEMPLATE, w_image=1.0, w_text=0.5,
                  w_audio=0.5, templates=""):
        """Zero-shot classification of image + text (+ audio) against labels, no training: each modality
        is scored against the labels' prompts, then the scores are fused by the weights.

        Args:
            image: the image (an http(s) URL of an image file), or none.
            text: a text, or empty.
            audio: a sound (an http(s) URL of an audio file), or none.
            labels: the candidate labels, one per line.
            template: the prompt template with {} for the label, e.g. "a photo of {}".
            w_image: the image's weight in the fusion, 0-1.
            w_text: the text's weight, 0-1.
            w_audio: the audio's weight, 0-1.
            templates: a prompt ensemble, one template per line, averaged per label; replaces template if given.

        Returns:
            the fused labels with probabilities ({label, confidences})
            a summary (Markdown)
            a chart of each modality's scores alone
        """
        audio = file_path(audio)
        z = tasks.zero_shot(image_source(image)[0], text, audio, labels, registry.for_slot("clip", lazy=True),
                            ctx.audio_for(bool(audio)), template=template, templates=templates,
                            weights={"image": w_image, "text": w_text, "audio": w_audio})
        warn_all(z.notices)
        mix = ", ".join(f"{m} {w:.2f}" for m, w in z.weights.items())
        info = f"Weights used (normalised): {mix}. Prompts like “{z.prompts[0]}”."
        if len(z.templates) > 1:
            info += f" Each label is the average of {len(z.templates)} templates' embeddings."
        if z.audio_prompts and z.audio_prompts[0] != z.prompts[0]:  # an audio model in its own space (CLAP)
            info += f" The audio was scored against its own text model, with prompts like “{z.audio_prompts[0]}”."
        return {r["label"]: r["score"] for r in z.labels}, info, zero_shot_figure(z)

    @user_errors
    def fill_templates(name):
        return prompts.builtin_set("image", name).text if name else gr.update()

    ui["template_set"].change(fill_templates, ui["template_set"], ui["templates"], api_name=False, queue=False)
    # The ensemble comes last, with a default: clients written before it keep working.
    inputs = [ui["image"], ui["text"], ui["audio"], ui["labels"], ui["template"], *ui["weights"], ui["templates"]]
    outputs = [ui["label"], ui["info"], ui["plot"]]
    scoring = ui["button"].click(zero_shot, inputs, outputs, api_name="classify_zero_shot",
                                 concurrency_id=MODEL_CONCURRENCY_ID, preprocess=False)
    # Where in the image the best label's prompt matched, against the other labels'.
    match_maps.listen_image(ui["why"], match_maps.image_explainer(ctx.registry, maps),
                            (scoring, [ui["label"], ui["template"]]), ui["image"], _prompts, contrast=True)
    for slider in ui["weights"]:  # moving a weight re-scores at once: the point of the sliders
        slider.release(zero_shot, inputs, outputs, api_name=False, concurrency_id=MODEL_CONCURRENCY_ID,
                       show_progress="minimal", preprocess=False)
