"""The Models tab: what the registry holds, what is loaded where, load/unload."""

from __future__ import annotations

import gradio as gr

from mmdemo.devices import available_devices
from mmdemo.errors import MMDemoError
from mmdemo.paths import REPO_DIR
from mmdemo.registry import Registry
from mmdemo.ui.common import MODEL_CONCURRENCY_ID, fmt_bytes, user_errors

COLUMNS = ["name", "kind", "state", "device", "dtype", "parameters", "memory", "load s", "weights", "error"]


def status_rows(registry: Registry) -> list[list]:
    rows = []
    for s in registry.status():
        rows.append([
            s.name, s.kind, s.state, s.device or "", s.dtype or "",
            f"{s.parameters:,}" if s.parameters is not None else "",
            fmt_bytes(s.memory_bytes),
            f"{s.load_seconds:.2f}" if s.load_seconds is not None else "",
            s.source.replace(str(REPO_DIR) + "/", ""), s.error or "",
        ])
    return rows


def summary(registry: Registry) -> str:
    p = registry.profile
    lines = [
        f"**Profile:** `{p.name}` — {p.description}",
        f"**Device:** `{registry.device}` (requested: `{registry.requested_device}`)",
        f"**Loaded weights:** {fmt_bytes(registry.loaded_memory_bytes())}"
        + (f" of a {fmt_bytes(registry.memory_budget_bytes)} budget" if registry.memory_budget_bytes else ""),
    ]
    lines += [f"⚠️ {w}" for w in dict.fromkeys(registry.warnings)]
    return "\n\n".join(lines)


def _first_choice(registry: Registry) -> str | None:
    """The active profile's first model, so Load does something useful on a first click."""
    p = registry.profile
    return next((n for n in (p.clip, p.captioner, p.audio) if n), (registry.names() or [None])[0])


def build(registry: Registry, settings=None) -> None:
    """Lay out the Models tab inside the current gr.Blocks context."""
    with gr.Tab("Models", id="models") as tab:
        info = gr.Markdown(summary(registry))
        table = gr.Dataframe(headers=COLUMNS, value=status_rows(registry), interactive=False,
                             label="Registry", wrap=True, max_height=2000,
                             column_widths=["16%", "8%", "8%", "6%", "7%", "9%", "8%", "6%", "22%", "10%"])
        with gr.Row():
            choice = gr.Dropdown(registry.names(), value=_first_choice(registry), label="Model")
            # Custom values allowed: an API client may ask for an accelerator this machine lacks
            # and get the CPU fallback with a warning, as --device does, not gradio's refusal.
            device = gr.Dropdown(available_devices(), value="auto", label="Device", allow_custom_value=True,
                                 info=f"auto = the app's device ({registry.device})", elem_id="models-device")
            load_btn = gr.Button("Load", variant="primary")
            unload_btn = gr.Button("Unload")
            profile_btn = gr.Button("Load whole profile")
            refresh_btn = gr.Button("Refresh")

        def refresh():
            """Show the model registry: every entry with its state (loaded or not), the device it
            is loaded on, dtype, parameter count, memory and load time, plus the active profile.

            Returns:
                The status table (one row per entry) and a Markdown summary of profile and device.
            """
            return status_rows(registry), summary(registry)

        @user_errors
        def load(name, device="auto"):
            """Load one model of the registry now (models otherwise load on first use) on a chosen
            device; one already loaded on another device moves there.

            Args:
                name: the registry entry to load, e.g. "tiny-clip" (the status table lists them).
                device: auto (the app's device), cpu, cuda or mps; an absent one falls back to CPU, with a warning.

            Returns:
                The status table (one row per entry, with its device) and the summary.
            """
            if not name:
                raise MMDemoError("model_not_picked", "Pick a model to load.")
            device = device or "auto"
            _, warning = registry.place(device)  # refuses an unknown device before any load
            if warning:
                gr.Warning(warning)
            registry.get(name, device=device)
            gr.Info(f"Loaded {name} on {registry.loaded_device(name) or '?'}.")
            return refresh()

        @user_errors
        def unload(name):
            """Unload one model of the registry, freeing its memory; it loads again on next use.

            Args:
                name: the registry entry to unload.

            Returns:
                The status table and the summary.
            """
            if not name:
                raise MMDemoError("model_not_picked", "Pick a model to unload.")
            if not registry.unload(name):
                gr.Warning(f"{name} was not loaded.")
            return refresh()

        @user_errors
        def load_profile():
            """Load every model the active profile uses (CLIP, captioner, audio, fusion heads).

            Returns:
                The status table and the summary.
            """
            names = registry.load_profile()
            gr.Info(f"Loaded {len(names)} models of profile {registry.profile_name}.")
            return refresh()

        outputs = [table, info]
        # The table was drawn when the app was built; opening the tab shows what is loaded now.
        tab.select(refresh, None, outputs, api_name=False, queue=False)
        refresh_btn.click(refresh, None, outputs, api_name="models_status", queue=False)
        # Device last, with a default: clients that send only the name keep working.
        loading = load_btn.click(load, [choice, device], outputs, api_name="load_model",
                                 concurrency_id=MODEL_CONCURRENCY_ID)
        # A failed load raises gr.Error; refresh anyway so the table shows the failure.
        loading.failure(refresh, None, outputs, api_name=False, queue=False)
        unload_btn.click(unload, choice, outputs, api_name="unload_model", concurrency_id=MODEL_CONCURRENCY_ID)
        profile_btn.click(load_profile, None, outputs, api_name="load_profile", concurrency_id=MODEL_CONCURRENCY_ID)
