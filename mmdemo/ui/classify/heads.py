"""Head files: download the winner of a training, upload a head file of your own."""

from __future__ import annotations

import gradio as gr

from mmdemo.errors import MMDemoError
from mmdemo.tasks import classify as tasks
from mmdemo.ui.classify.context import ClassifyContext
from mmdemo.ui.common import user_errors


def render() -> dict:
    download = gr.File(label="Download the winning head (.safetensors)", interactive=False, elem_id="train-download")
    upload = gr.File(type="filepath", file_types=[".safetensors"], label="Upload a head file", elem_id="upload-head")
    name = gr.Textbox("", label="Name for the uploaded head (optional)")
    button = gr.Button("Add uploaded head")
    status = gr.Markdown(elem_id="upload-status")
    return {"download": download, "upload": upload, "name": name, "button": button, "status": status}


def listen(ctx: ClassifyContext, ui: dict, *, head: gr.Dropdown) -> None:
    @user_errors
    def upload_head(path, name):
        if not path:
            raise MMDemoError("head_file_missing", "Choose a head file (.safetensors) to upload first.")
        added = tasks.import_head(path, ctx.registry, ctx.cache_dir, name or None)
        return (f"Added **{added}**; pick it in *Classify with a head*.",
                gr.update(choices=ctx.fusion_names(), value=added))

    ui["button"].click(upload_head, [ui["upload"], ui["name"]], [ui["status"], head], api_name="upload_head")
