"""Head files: writing, saving, importing, registering and resolving fusion heads,
and the check that a head fits the encoders of the active profile.

The models layer loads a head file without asking what profile is active; the
registry, which holds the profile, decides whether a head fits
(``Registry.check_fits_profile``: on every load, so the Models tab shows a misfit as
failed). Heads that never pass through the registry (an uploaded file, a head file
named on the CLI, a user's own head) are checked here by :func:`check_encoders` before
they are used.

Heads users save in the app live in a :class:`HeadStore`, one namespace per owner (a
login or a browser session, a string the UI chooses): an owner sees the registry's heads
and its own, never another owner's, and a name it reuses replaces only its own head.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
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


# What a head name may hold: it becomes a file name and a registry name.
_NAME_CHARS, _NAME_MAX = "a-z0-9_-", 60


def head_name(name: str | None, fallback: str) -> str:
    """A registry-safe head name: lowercase letters, digits, '-' and '_'."""
    raw = (name or "").strip() or fallback
    clean = re.sub(f"[^{_NAME_CHARS}]+", "-", raw.lower()).strip("-_")[:_NAME_MAX]
    if not clean:
        raise MMDemoError("head_name_invalid", f"Head name {name!r} has no usable characters; use letters, "
                                               "digits, '-' or '_'.")
    return clean


def check_save_name(registry, name: str) -> None:
    """Refuse to save over a built-in entry (bundled heads, encoders): only the user's own heads are replaced."""
    if name in registry.catalog.entries:
        spec = registry.catalog.entry(name)
        if spec.kind != "fusion" or (spec.weights is not None and spec.weights.resolve().is_relative_to(
                TINY_BUNDLE_DIR.resolve())):
            raise MMDemoError("head_name_reserved", f"{name!r} is a built-in model name; pick another name for "
                                                    "your head.")


def write_head(report: TrainReport, path: str | Path, clip, audio=None, token_tower=None) -> Path:
    """The winner as a head file (atomic: an earlier file at ``path`` survives a crash),
    its metadata naming the encoders it was trained on and how good it is."""
    from mmdemo.head_inputs import head_encoder_ids, reads_tokens
    from mmdemo.models.fusion import save_head  # torch, only when a head is written

    meta = {"labels": report.label_names, "modalities": list(report.modalities), "task": report.dataset,
            # The token tower only for a head that reads its patches (a pooled winner fits any tower).
            "encoder": head_encoder_ids(report.modalities, clip, audio, token_tower if reads_tokens(
                report.winner_head.config()) else None),
            "validation": {"accuracy": report.winner.accuracy, "macro_f1": report.winner.macro_f1,
                           "n": report.n_val},
            "quality": report.quality(),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report.saved_path = save_head(path, report.winner_head, meta)
    return report.saved_path


def save_trained_head(report: TrainReport, registry, cache_dir: str | Path, name: str, clip, audio=None,
                      token_tower=None) -> Path:
    """Save the winner to ``cache_dir/heads/<name>.safetensors`` and register it."""
    check_save_name(registry, name)
    path = write_head(report, Path(cache_dir) / "heads" / f"{name}.safetensors", clip, audio, token_tower)
    registry.register(EntrySpec(name, "fusion", "mmdemo", weights=path,
                                description=f"Your {report.winner.kind} head for {report.dataset!r} "
                                            f"({len(report.label_names)} labels, validation accuracy "
                                            f"{report.winner.accuracy:.3f})."))
    report.saved_as, report.saved_path = name, path
    return path


def _checked_upload(path: Path, registry) -> dict:
    """An uploaded head file's metadata, once it is known to be a head (safetensors with
    our metadata; never unpickled) trained on the active profile's encoders."""
    from mmdemo.models.fusion_backend import handle_from_file

    meta = handle_from_file(path).meta
    check_encoders(meta, registry, f"Head file {path.name!r}")
    return meta


def import_head(path: str | Path, registry, cache_dir: str | Path, name: str | None = None) -> str:
    """Validate an uploaded head file (safetensors + metadata; never unpickled), refuse it
    if it was trained on other encoders, then keep a copy and register it. Returns its name."""
    path = Path(path)
    meta = _checked_upload(path, registry)
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


def registry_head_summary(registry, name: str):
    """A registry head's :class:`mmdemo.head_kinds.HeadSummary`, from its file's header (loads nothing)."""
    spec = registry.catalog.entry(name)
    if spec.kind != "fusion" or spec.weights is None:
        raise MMDemoError("not_a_fusion_head", f"{name!r} is a {spec.kind} model, not a fusion head.")
    return _summary(spec.weights, name)


def _summary(path: Path, name: str):
    """The header of a head file as a summary, or a message saying it is none."""
    from mmdemo.head_kinds import read_head_summary

    try:
        return read_head_summary(path, name)
    except (OSError, ValueError, KeyError, TypeError):
        raise MMDemoError("not_a_head", f"Head {name!r}: its file is missing or is not an mmdemo fusion head.") from None


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


# Loaded user heads kept in memory across all owners (each is small; files stay on disk).
MAX_LOADED_USER_HEADS = 32


def owner_key(owner: str) -> str:
    """The folder name of ``owner``'s heads: a hash, so no login or session id reaches a path."""
    return hashlib.sha256(f"mmdemo-head-owner:{owner}".encode()).hexdigest()[:32]


def owner_of(request) -> str:
    """Whose heads a request may see and save (every tab asks this one place): its login,
    kept across restarts, or else its session (a browser tab, an API client or an MCP
    session: mmdemo/sessions.py; ``request``: Gradio's, duck-typed)."""
    from mmdemo.sessions import session_of

    user = getattr(request, "username", None)
    return f"user:{user}" if user else f"session:{session_of(request)}"


class HeadStore:
    """Users' own heads under ``cache_dir/heads/owners/<owner_key>/<name>.safetensors``,
    kept out of the shared registry (which every session lists). Files are written
    atomically; a loaded head is cached by its file's identity, so a replaced file is
    loaded afresh and a head saved before a restart is found again on first use."""

    def __init__(self, registry, cache_dir: str | Path, max_loaded: int = MAX_LOADED_USER_HEADS):
        self.registry, self.root = registry, Path(cache_dir) / "heads" / "owners"
        self._loaded: OrderedDict[tuple, object] = OrderedDict()
        self._max_loaded, self._lock = max_loaded, threading.Lock()

    def of(self, owner: str) -> "OwnerHeads":
        if not owner:
            raise ValueError("a head owner is a non-empty string")
        return OwnerHeads(self, self.root / owner_key(owner))

    def load(self, path: Path, what: str):
        from mmdemo.models.fusion_backend import handle_from_file

        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        handle = handle_from_file(path, self.registry.device)
        check_encoders(handle.meta, self.registry, what)
        with self._lock:
            for old in [k for k in self._loaded if k[0] == key[0]]:  # an earlier version of this file
                del self._loaded[old]
            self._loaded[key] = handle
            while len(self._loaded) > self._max_loaded:
                self._loaded.popitem(last=False)
        return handle


class OwnerHeads:
    """One owner's view: the registry's fusion heads plus its own."""

    def __init__(self, store: HeadStore, folder: Path):
        self.store, self.folder, self.registry = store, folder, store.registry

    def own(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.safetensors")) if self.folder.is_dir() else []

    def names(self) -> list[str]:
        """What this owner can pick: the registry's heads, then its own."""
        shared = self.registry.names(kind="fusion")
        return shared + [n for n in self.own() if n not in shared]

    def check_name(self, name: str | None, fallback: str) -> str:
        """A usable name for a new head of this owner: registry names (bundled or shared heads,
        encoders) are refused, since every session lists them."""
        name = head_name(name, fallback)
        if name in self.registry.catalog.entries:
            raise MMDemoError("head_name_reserved", f"{name!r} is already a model name in this app; pick another "
                                                    "name for your head.")
        return name

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def save_trained(self, report: TrainReport, name: str, clip, audio=None, token_tower=None) -> bool:
        """Save the winner as this owner's ``name``; True when it replaced this owner's head of that name."""
        name = self.check_name(name, name)
        path = self._path(name)
        replaced = path.is_file()
        write_head(report, path, clip, audio, token_tower)
        report.saved_as = name
        return replaced

    def import_file(self, path: str | Path, name: str | None = None) -> tuple[str, bool]:
        """Validate an uploaded head file (as :func:`import_head`) and keep it as this
        owner's; returns (name, whether it replaced this owner's head of that name)."""
        path = Path(path)
        _checked_upload(path, self.registry)
        name = self.check_name(name, path.stem)
        dest = self._path(name)
        replaced = dest.is_file()
        atomic_write_bytes(dest, path.read_bytes())
        return name, replaced

    def summary(self, name: str):
        """What to say about a head before using it (its file's header: loads nothing)."""
        key = str(name or "").strip()
        own = self._path(key) if re.fullmatch(f"[{_NAME_CHARS}]{{1,{_NAME_MAX}}}", key) else None  # never a path
        if own is not None and own.is_file():
            return _summary(own, key)
        if key not in self.registry.catalog.entries:
            raise MMDemoError("head_not_found", f"No head named {key!r}.")
        return registry_head_summary(self.registry, key)

    def resolve(self, name: str):
        """A FusionHandle by name: this owner's head of that name, else the registry's."""
        key = str(name or "").strip()
        own = self._path(key) if re.fullmatch(f"[{_NAME_CHARS}]{{1,{_NAME_MAX}}}", key) else None  # never a path
        if own is not None and own.is_file():
            return self.store.load(own, f"Your head {key!r}")
        if key and key not in self.registry.catalog.entries:
            raise MMDemoError("head_not_found", f"No head named {key!r}. Available: "
                                                f"{', '.join(self.names()) or 'none'}.")
        return resolve_head(self.registry, key)
