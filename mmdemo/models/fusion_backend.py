"""Fusion heads behind the registry, with a check that they fit the active encoders."""

from __future__ import annotations

from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError


class FusionHandle:
    def __init__(self, name: str, head, meta: dict):
        self.name, self.head, self.meta = name, head, meta
        self.labels: list[str] = list(meta["labels"])
        self.modalities: tuple[str, ...] = tuple(meta["modalities"])
        self.kind: str = meta["config"]["kind"]
        self.encoder: dict = dict(meta.get("encoder", {}))

    def modules(self):
        return [self.head]


def check_encoders(meta: dict, registry, what: str) -> None:
    """Refuse a head trained on other encoders than the active profile's: its numbers
    would be meaningless, and silently so."""
    profile = registry.profile
    for slot, trained_on in dict(meta.get("encoder", {})).items():
        active_name = getattr(profile, slot, None)
        active = registry.catalog.entry(active_name).model_id if active_name else None
        if active != trained_on:
            raise MMDemoError(
                f"{what} was trained on {slot} encoder {trained_on!r}, but profile {profile.name!r} uses "
                f"{active or 'none'}; switch to the profile it was trained on or retrain it."
            )


def load_fusion(spec: EntrySpec, device: str, registry=None) -> FusionHandle:
    from mmdemo.models.fusion import load_head

    if spec.weights is None or not spec.weights.is_file():
        raise MMDemoError(f"Head file for {spec.name!r} not found: {spec.weights}")
    head, meta = load_head(spec.weights, device=device)
    if registry is not None:
        check_encoders(meta, registry, f"Head {spec.name!r}")
    return FusionHandle(spec.name, head, meta)
