"""The one place that picks the device models run on."""

from __future__ import annotations

from mmdemo.errors import MMDemoError
from mmdemo.settings import DEVICES


def _present() -> tuple[bool, bool]:
    """(cuda, mps): which accelerators torch can use here."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return cuda, mps


def resolve_device(requested: str) -> tuple[str, str | None]:
    """Map ``auto|cpu|cuda|mps`` to an available device; returns (device, warning).

    A requested device that is not available falls back to CPU with a warning the
    UI shows, rather than failing: a demo should still run.
    """
    cuda, mps = _present()
    if requested == "auto":
        return ("cuda" if cuda else "mps" if mps else "cpu"), None
    if requested == "cuda" and not cuda:
        return "cpu", "CUDA was requested but is not available; running on CPU."
    if requested == "mps" and not mps:
        return "cpu", "MPS (Apple GPU) was requested but is not available; running on CPU."
    return requested, None


def available_devices() -> list[str]:
    """What a user can pick for a model here: auto and cpu, then cuda and mps when present."""
    cuda, mps = _present()
    return ["auto", "cpu"] + (["cuda"] if cuda else []) + (["mps"] if mps else [])


def entry_device(device: str | None) -> tuple[str | None, str | None]:
    """(device, warning) for a device asked for one model: None or "auto" give (None, None),
    i.e. follow the app's device; an absent accelerator falls back to CPU with a warning; a
    name that is none of auto|cpu|cuda|mps is a user error."""
    if device is not None and device not in DEVICES:
        raise MMDemoError("device_unknown", f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if device in (None, "auto"):
        return None, None
    return resolve_device(device)
