"""The Folders tab: whole folders or zips through one task, with a results table and export."""

from __future__ import annotations

import gradio as gr

from mmdemo.registry import Registry


def build(registry: Registry, settings=None) -> None:
    with gr.Tab("Folders", id="folders"):
        gr.Markdown("Run a task over a whole folder or zip.")
