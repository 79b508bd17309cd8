"""Where a catalog entry's weights come from: decided here, and only here.

:func:`resolve_weights` turns an entry into a :class:`WeightsSource`, in one fixed
order (as open_clip's ``parse_model_name`` and timm's ``_resolve_pretrained_source``
each decide it in one place):

1. ``arch = "hf-hub:org/repo"`` or ``arch = "local-dir:/path"``: config and weights
   both come from there;
2. ``weights = "file"``: a local file (``.safetensors``; ``.pt``/``.bin`` are read
   with ``weights_only=True``);
3. ``pretrained = "tag"``: an open_clip pretrained tag, downloaded on first use;
4. none of these: random initialisation where the entry allows it (tests only),
   else nothing (loading then fails with a clear message).

Every backend, the registry's status rows and ``EntrySpec.model_id`` ask this
module; none of them looks at ``arch``/``weights``/``pretrained`` on its own.
Nothing here imports torch, except :func:`read_safetensors` when it is called.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Protocol

from mmdemo.errors import MMDemoError
from mmdemo.hashing import file_hash


class WeightsSpec(Protocol):
    """What this module reads of a ``mmdemo.catalog.EntrySpec`` (a protocol, so that the
    catalog can ask this module without the two importing each other)."""

    name: str
    backend: str
    arch: str
    pretrained: str | None
    weights: Path | None
    allow_random: bool

HUB, LOCAL_DIR, FILE, TAG, RANDOM, MISSING = "hf-hub", "local-dir", "file", "tag", "random", "missing"


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    kind: str  # one of HUB, LOCAL_DIR, FILE, TAG, RANDOM, MISSING
    location: str = ""  # the repo, folder, file path or tag; "" for RANDOM/MISSING

    @property
    def label(self) -> str:
        """A human-readable answer to 'where do this entry's weights come from?'."""
        return "random init" if self.kind in (RANDOM, MISSING) else f"{self.kind}:{self.location}"


def resolve_weights(spec: WeightsSpec) -> WeightsSource:
    """The one decision of where ``spec``'s weights come from (see the module doc)."""
    for prefix in (HUB, LOCAL_DIR):
        if spec.arch.startswith(prefix + ":"):
            return WeightsSource(prefix, spec.arch[len(prefix) + 1:])
    if spec.weights is not None:
        return WeightsSource(FILE, str(spec.weights))
    if spec.pretrained:
        return WeightsSource(TAG, spec.pretrained)
    return WeightsSource(RANDOM if spec.allow_random else MISSING)


def require_weights(spec: WeightsSpec, accepted: tuple[str, ...], file_label: str = "Weights file") -> WeightsSource:
    """:func:`resolve_weights`, refused with a clear message when this entry's backend
    can't use that kind of source, or a named file is not there (``file_label`` names
    it in that message, e.g. "Head file")."""
    source = resolve_weights(spec)
    if source.kind not in accepted:
        if source.kind == MISSING:
            raise MMDemoError("weights_missing", f"Model {spec.name!r} has no weights (set weights, pretrained "
                                                 "or an hf-hub:/local-dir: arch).")
        raise MMDemoError("weights_unsupported", f"Model {spec.name!r}: its backend {spec.backend!r} can't load "
                                                 f"weights from {source.label}; it takes "
                                                 f"{', '.join(accepted)}.")
    if source.kind == FILE and not Path(source.location).is_file():
        raise MMDemoError("weights_not_found", f"{file_label} for {spec.name!r} not found: {source.location}")
    return source


def model_id(spec: WeightsSpec) -> str:
    """Names the exact weights: indexes, feature caches and trained heads are valid only
    for the encoder they were computed with, wherever the repo lives."""
    source = resolve_weights(spec)
    if source.kind == FILE:  # the content, not the path: a moved file keeps its id
        return f"{spec.name}:{_file_digest(source.location)}"
    if source.kind == TAG:
        return f"{spec.name}:{spec.arch}/{source.location}"
    return f"{spec.name}:{spec.arch if source.kind in (HUB, LOCAL_DIR) else 'random'}"


def _file_digest(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return _digest(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_hash(path, 12)


def read_safetensors(path: str | Path, meta_key: str, what: str,
                     file_label: str | None = None) -> tuple[dict, object]:
    """(state dict on CPU, the JSON metadata under ``meta_key`` or None) of a
    safetensors file; never unpickles. ``what`` names the file kind in errors
    ("fusion head"), ``file_label`` the file when it is missing (default "<What> file")."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MMDemoError("file_not_found", f"{file_label or what[:1].upper() + what[1:] + ' file'} not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(meta_key)
        state = load_file(str(path), device="cpu")
    except Exception:  # safetensors raises its own error types, OSError, ValueError...
        raise MMDemoError("not_safetensors", f"{path.name} is not an mmdemo {what} (not a safetensors file).") from None
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    return state, meta
