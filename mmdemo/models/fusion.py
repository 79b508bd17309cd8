"""Fusion heads: made by kind, saved and loaded as safetensors with their metadata.

The heads live in :mod:`mmdemo.models.fusion_pooled` (weighted sum, concatenation, and the
pooled designs older head files hold) and :mod:`mmdemo.models.fusion_tokens` (bilinear,
attention and gated over tokens); their shared interface in :mod:`mmdemo.models.fusion_base`.
A head's config says which design it is (``reads``: "tokens"), so every file loads into
the class it was trained as.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmdemo.atomic import atomic_save_file
from mmdemo.errors import MMDemoError
from mmdemo.head_kinds import HEAD_KINDS, HEAD_META_KEY, TOKEN_KINDS
from mmdemo.models.fusion_base import FusionHead
from mmdemo.models.fusion_pooled import (ConcatHead, PooledAttentionHead, PooledBilinearHead, PooledGatedHead,
                                         WeightedSumHead)
from mmdemo.models.fusion_tokens import AttentionHead, BilinearHead, GatedHead
from mmdemo.weights import read_safetensors


_TOKEN_HEADS = {cls.kind: cls for cls in (BilinearHead, AttentionHead, GatedHead)}
_POOLED_HEADS = {cls.kind: cls for cls in (WeightedSumHead, ConcatHead, PooledBilinearHead, PooledAttentionHead,
                                           PooledGatedHead)}


def create_head(kind: str, *, reads: str | None = None, **kw) -> FusionHead:
    """A new head of ``kind``. Bilinear, attention and gated heads read tokens unless
    ``reads="pooled"`` (or a saved config without ``reads``: the older design) says otherwise."""
    if kind not in HEAD_KINDS:
        raise MMDemoError("unknown_head_kind", f"Unknown head kind {kind!r}. Available: {', '.join(HEAD_KINDS)}.")
    if kind in TOKEN_KINDS and (reads or "tokens") == "tokens":
        return _TOKEN_HEADS[kind](**kw)
    return _POOLED_HEADS[kind](**kw)


def save_head(path: str | Path, head: FusionHead, metadata: dict, *, half: bool = False) -> Path:
    """`half` stores float weights as float16 (the shipped bundle does, to stay small);
    `load_head` copies them back into float32 parameters."""
    meta = {"config": head.config(), **metadata}
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in head.state_dict().items()}
    return atomic_save_file(state, path, {"format": "pt", HEAD_META_KEY: json.dumps(meta)})


def load_head(path: str | Path, device: str = "cpu") -> tuple[FusionHead, dict]:
    """A head and its metadata; never unpickles (safetensors only)."""
    path = Path(path)
    state, meta = read_safetensors(path, HEAD_META_KEY, "fusion head", file_label="Head file")
    try:
        cfg = dict(meta["config"])
        kind = cfg.pop("kind")
        reads = cfg.pop("reads", "pooled")
        if reads == "tokens":
            cfg.setdefault("prior", False)  # token heads saved before the prior had none
        head = create_head(kind, reads=reads, **cfg)
        head.load_state_dict(state)
        if not isinstance(meta.get("labels"), list) or len(meta["labels"]) != cfg["num_classes"]:
            raise ValueError("labels")
    except MMDemoError:
        raise
    except Exception:  # anything off in the metadata or the tensors: the file is not one of ours
        raise MMDemoError("not_a_head", f"{path.name} is not an mmdemo fusion head (missing or inconsistent "
                                        "metadata).") from None
    return head.to(device).eval(), meta
