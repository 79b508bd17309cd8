"""The one place that picks the device models run on."""

from __future__ import annotations


def resolve_device(requested: str) -> tuple[str, str | None]:
    """Map ``auto|cpu|cuda|mps`` to an available device; returns (device, warning).

    A requested device that is not available falls back to CPU with a warning the
    UI shows, rather than failing: a demo should still run.
    """
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return ("cuda" if cuda else "mps" if mps else "cpu"), None
    if requested == "cuda" and not cuda:
        return "cpu", "CUDA was requested but is not available; running on CPU."
    if requested == "mps" and not mps:
        return "cpu", "MPS (Apple GPU) was requested but is not available; running on CPU."
    return requested, None
