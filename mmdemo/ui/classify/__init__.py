"""The Classify tab: image + text (+ audio) through a trained fusion head or zero-shot,
and training heads on your own data with a live chart, a leaderboard and a cancel button.

One module per sub-tab, each with ``render`` (layout, returns its components) apart
from ``listen`` (event wiring), as facefusion lays out its UI; handlers call
mmdemo.tasks.classify and only format its results.
"""

from __future__ import annotations

import gradio as gr

from mmdemo.ui.classify import apply, heads, train, zero_shot
from mmdemo.ui.classify.context import ClassifyContext
from mmdemo.ui.common import ResultFiles

INTRO = ("Classify an image with a text (and a sound) through a trained **fusion head**, or **zero-shot** "
         "against labels you type; train your own heads and compare them with single-modality baselines. "
         "The tiny bundle only knows the generated world (coloured shapes, synthetic sounds).")


def build(registry, settings):
    """Lay out the Classify tab inside the current gr.Blocks context; returns what removes
    its temp folder and the anonymous sessions' heads when the app closes."""
    ctx = ClassifyContext.create(registry, settings)
    maps = ResultFiles(prefix="mmdemo-classify-maps-")  # the "why it matched" pictures
    with gr.Tab("Classify", id="classify"):
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Classify with a head", id="classify_head"):
                head_ui = apply.render(ctx)
            with gr.Tab("Zero-shot", id="classify_zero_shot"):
                zero_shot_ui = zero_shot.render(ctx)
            with gr.Tab("Train your own", id="classify_train"):
                train_ui = train.render(ctx)
                with gr.Row():
                    train_ui["confusion"] = gr.Plot(label="Confusion matrix", elem_id="train-confusion")
                    with gr.Column():
                        heads_ui = heads.render()
        apply.listen(ctx, head_ui, maps)
        zero_shot.listen(ctx, zero_shot_ui, maps)
        train.listen(ctx, train_ui, download=heads_ui["download"], head=head_ui["head"])
        heads.listen(ctx, heads_ui, head=head_ui["head"])

    def close() -> None:
        ctx.close()
        maps.close()

    return close
