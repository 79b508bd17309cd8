"""Reading Gradio outputs as gradio_client hands them over: labels, plots, tables."""

from __future__ import annotations

import base64
import json

import numpy as np


def confidences(label_out: dict) -> dict[str, float]:
    """A gr.Label output as {label: probability}, in the order shown (best first)."""
    return {c["label"]: c["confidence"] for c in label_out["confidences"]}


def plotly_traces(plot_out: dict) -> list[dict]:
    """The traces of a gr.Plot output (plotly JSON), typed arrays ({dtype, bdata}) decoded to numpy."""
    assert plot_out["type"] == "plotly", plot_out

    def decode(v):
        if isinstance(v, dict) and "bdata" in v:
            arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
            shape = v.get("shape")
            return arr.reshape([int(n) for n in str(shape).split(",")]) if shape else arr
        if isinstance(v, list):
            return [decode(x) for x in v]
        return v

    return [{k: decode(v) for k, v in t.items()} for t in json.loads(plot_out["plot"])["data"]]


def plotly_layout(plot_out: dict) -> dict:
    return json.loads(plot_out["plot"])["layout"]


def layout_text(plot_out: dict) -> str:
    """Every title and annotation of a figure, joined: what a reader sees written on it."""
    layout = plotly_layout(plot_out)
    parts = [str(layout.get("title", {}).get("text", ""))]
    parts += [str(a.get("text", "")) for a in layout.get("annotations", [])]
    return "\n".join(parts)


def predict_with_warnings(client, *args, api_name: str) -> tuple:
    """``client.predict`` that also returns the warnings the page would show as toasts
    (gr.Warning reaches API clients as log messages): (result, [warning text])."""
    job = client.submit(*args, api_name=api_name)
    result = job.result()  # raises AppError as predict does
    warnings = []
    updates = job.communicator.updates
    while not updates.empty():  # filled by the client's worker thread, which is done now
        log = getattr(updates.get_nowait(), "log", None)
        if log and log[1] == "warning":
            warnings.append(log[0])
    return result, warnings
