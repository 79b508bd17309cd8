"""Tiny random open_clip architectures for tests: the real loading code runs, nothing downloads."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

TINY_COCA_CFG = {
    "embed_dim": 64,  # CoCa's decoder needs embed_dim == text width == decoder width
    "multimodal_cfg": {"context_length": 16, "width": 64, "heads": 2, "layers": 2, "attn_pooler_heads": 2,
                       "vocab_size": 49408},
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8,
                   "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "layers": 2, "heads": 2, "width": 64,
                 "embed_cls": True, "output_tokens": True},
    "custom_text": True,
}


def write_config(directory: Path, name: str, cfg: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path
