"""mmdemo: a multimodal demo application (image, audio, classification) on Gradio.

Importing this package is cheap on purpose: torch, open_clip and gradio are
imported only by the modules that need them, when they are first used.
"""

__version__ = "0.1.0"

from mmdemo.errors import MMDemoError  # noqa: E402  (light: no heavy imports)

__all__ = ["MMDemoError", "__version__"]
