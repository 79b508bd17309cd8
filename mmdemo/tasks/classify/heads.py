"""Head files: writing, saving, importing, registering and resolving fusion heads,
and the check that a head fits the encoders of the active profile.

The models layer loads a head file without asking what profile is active; the
registry, which holds the profile, decides whether a head fits
(``Registry.check_fits_profile``: on every load, so the Models tab shows a misfit as
failed). Heads that never pass through the registry (an uploaded file, a head file
named on the CLI) are checked here by :func:`check_encoders` before they are used.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from mmdemo.atomic import atomic_write_bytes
from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError
from mmdemo.paths import TINY_BUNDLE_DIR
from mmdemo.tasks.classify.reports import TrainReport


def check_encoders(meta: dict, registry, what: str) -> None:
    """Refuse a head trained on other encoders than the active profile's (the registry
    decides, so a head loaded from the Models tab is refused the same way)."""
    registry.check_fits_profile(dict(meta.get("encoder", {})), what)


def head_name(name: str | None, fallback: str) -> str:
    """A registry-safe head name: lowercase letters, digits, '-' and '_'."""
    raw = (name or "").strip() or fallback
    clean = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")[:60]
    if not clean:
        raise MMDemoError("head_name_invalid", f"Head name {name!r} has no usable characters; use letters, "
                                               "digits, '-' or '_'.")
    return clean


def _encoders(clip, audio, modalities) -> dict:
    enc = {"clip": clip.model_id}
    if "audio" in modalities and audio is not None:
        enc["audio"] = audio.model_id
    return enc


def check_save_name(registry, name: str) -> None:
    """Refuse to save over a built-in entry (bundled heads, encoders): only the user's own heads are replaced."""
    if name in registry.catalog.entries:
        spec = registry.catalog.entry(name)
        if spec.kind != "fusion" or (spec.weights is not None and spec.weights.resolve().is_relative_to(
                TINY_BUNDLE_DIR.resolve())):
            raise MMDemoError("head_name_reserved", f"{name!r} is a built-in model name; pick another name for "
                                                    "your head.")


def write_head(report: TrainReport, path: str | Path, clip, audio=None) -> Path:
    """The winner as a head file (atomic: an earlier file at ``path`` survives a crash),
    its metadata naming the encoders it was trained on."""
    from mmdemo.models.fusion import save_head  # torch, only when a head is written

    meta = {"labels": report.label_names, "modalities": list(report.modalities), "task": report.dataset,
            "encoder": _encoders(clip, audio, report.modalities),
            "validation": {"accuracy": report.winner.accuracy, "macro_f1": report.winner.macro_f1,
                           "n": report.n_val},
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report.saved_path = save_head(path, report.winner_head, meta)
    return report.saved_path


def save_trained_head(report: TrainReport, registry, cache_dir: str | Path, name: str, clip, audio=None) -> Path:
    """Save the winner to ``cache_dir/heads/<name>.safetensors`` and register it."""
    check_save_name(registry, name)
    path = write_head(report, Path(cache_dir) / "heads" / f"{name}.safetensors", clip, audio)
    registry.register(EntrySpec(name, "fusion", "mmdemo", weights=path,
                                description=f"Your {report.winner.kind} head for {report.dataset!r} "
                                            f"({len(report.label_names)} labels, validation accuracy "
                                            f"{report.winner.accuracy:.3f})."))
    report.saved_as, report.saved_path = name, path
    return path


def import_head(path: str | Path, registry, cache_dir: str | Path, name: str | None = None) -> str:
    """Validate an uploaded head file (safetensors + metadata; never unpickled), refuse it
    if it was trained on other encoders, then keep a copy and register it. Returns its name."""
    from mmdemo.models.fusion_backend import handle_from_file

    path = Path(path)
    meta = handle_from_file(path).meta
    check_encoders(meta, registry, f"Head file {path.name!r}")
    name = head_name(name, path.stem)
    check_save_name(registry, name)
    dest = atomic_write_bytes(Path(cache_dir) / "heads" / f"{name}.safetensors", path.read_bytes())
    registry.register(EntrySpec(name, "fusion", "mmdemo", weights=dest,
                                description=f"Uploaded {meta['config']['kind']} head ({len(meta['labels'])} labels)."))
    return name


def register_saved_heads(registry, cache_dir: str | Path) -> list[str]:
    """Heads saved in earlier sessions, registered (not loaded) so they are listed again."""
    folder = Path(cache_dir) / "heads"
    added = []
    if not folder.is_dir():
        return added
    for p in sorted(folder.glob("*.safetensors")):
        name = p.stem
        if name in registry.catalog.entries:
            continue
        registry.register(EntrySpec(name, "fusion", "mmdemo", weights=p, description="Your saved head."))
        added.append(name)
    return added


def resolve_head(registry, name_or_path: str | Path, *, allow_paths: bool = False):
    """A FusionHandle, checked against the active encoders, from a registry name or,
    where ``allow_paths`` (the CLI; never a web request, which must not read server
    files), a head file (validated, on the registry's device)."""
    key = str(name_or_path or "").strip()
    if not key:
        raise MMDemoError("head_missing", "Pick a head (or zero-shot).")
    if key in registry.catalog.entries:
        kind = registry.catalog.entry(key).kind
        if kind != "fusion":
            raise MMDemoError("not_a_fusion_head", f"{key!r} is a {kind} model, not a fusion head.")
        return registry.get(key)  # the registry refuses a head that does not fit the profile
    path = Path(key)
    if allow_paths and (path.suffix == ".safetensors" or path.is_file()):
        from mmdemo.models.fusion_backend import handle_from_file

        handle = handle_from_file(path, registry.device)
        check_encoders(handle.meta, registry, f"Head file {path.name!r}")
        return handle
    names = ", ".join(registry.names(kind="fusion")) or "none"
    raise MMDemoError("head_not_found", f"No head named {key!r}. Available: {names}.")
