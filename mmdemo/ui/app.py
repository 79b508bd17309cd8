"""The one gr.Blocks app: every tab shares one registry; nothing launches here."""

from __future__ import annotations

import gradio as gr

from mmdemo.registry import Registry, registry_from_settings
from mmdemo.settings import Settings

TITLE = "mmdemo — try multimodal models"
# Tab modules in mmdemo/ui/, in page order; each exposes build(registry, settings).
TABS = ("image", "audio", "classify", "models")


def build_demo(settings: Settings | None = None, registry: Registry | None = None) -> gr.Blocks:
    """Build the app for ``settings`` (defaults: the tiny profile); loads no weights."""
    import importlib

    settings = settings or Settings()
    registry = registry or registry_from_settings(settings)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nProfile **{registry.profile_name}**. Models load on first use; "
                    "the Models tab shows what is loaded.")
        with gr.Tabs():
            for tab in TABS:
                importlib.import_module(f"mmdemo.ui.{tab}").build(registry, settings)
    demo.mmdemo_registry = registry  # for tests and the launcher; handlers use closures
    return demo


def launch(demo: gr.Blocks, settings: Settings, **overrides):
    """Queue and launch with the settings' limits (upload size, queue size, auth, share)."""
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency)
    kwargs = dict(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        auth=settings.auth,
        max_file_size=settings.max_upload_bytes,
        show_error=True,
    )
    kwargs.update(overrides)
    return demo.launch(**kwargs)
