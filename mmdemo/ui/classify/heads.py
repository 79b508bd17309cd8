"""Head files: download the winner of a training, upload a head file of your own (kept in
your own namespace: other sessions neither see nor replace it)."""

from __future__ import annotations

import gradio as gr

from mmdemo.errors import MMDemoError
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
    def upload_head(path, name, request: gr.Request):
        """Add a trained fusion head (a .safetensors file from train_heads) for this session to classify with.

        Args:
            path: the head file (an http(s) URL of a .safetensors file).
            name: the name to give it; empty = the file's own.

        Returns:
            A status message (Markdown) and the updated list of heads.
        """
        if not path:
            raise MMDemoError("head_file_missing", "Choose a head file (.safetensors) to upload first.")
        added, replaced = ctx.heads_of(request).import_file(path, name or None)
        done = f"Replaced your head **{added}**" if replaced else f"Added **{added}**"
        return (f"{done}; pick it in *Classify with a head*. Only this session (or, with --auth, this login) sees it.",
                gr.update(choices=ctx.fusion_names(request), value=added))

    ui["button"].click(upload_head, [ui["upload"], ui["name"]], [ui["status"], head], api_name="upload_head")
