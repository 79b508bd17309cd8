"""The Compare tab: one input through several models or every fusion head, side by side."""

from __future__ import annotations

import gradio as gr

from mmdemo.registry import Registry


def build(registry: Registry, settings=None) -> None:
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("One input through several models or heads, side by side.")
