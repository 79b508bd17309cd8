"""Architectures of the embedded tiny bundle, as open_clip custom configs.

Same model code as real CLIP/CoCa, only smaller: 64x64 images in 8x8 patches (seen through a conv stem) and a
word-level vocabulary of the generated world (a few hundred ids instead of 49,408,
which is what makes CoCa trainable on two CPU cores).
"""

from __future__ import annotations

IMAGE_SIZE = 64
EMBED_DIM = 128
CONTEXT_LENGTH = 24  # the longest generated text is 21 tokens


# A convolutional stem instead of the 8x8 patchify conv (mmdemo/models/conv_stem.py):
# issue 14 measured shape accuracy 0.47 vs 0.20 after 400 supervised steps.
CONV_STEM = [32, 64, 128]


def clip_config(vocab_size: int) -> dict:
    return {
        "embed_dim": EMBED_DIM,
        "mmdemo_conv_stem": CONV_STEM,
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 128, "layers": 3, "head_width": 32},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128, "heads": 4,
                     "layers": 3}
    }


def coca_config(vocab_size: int) -> dict:
    return {
        "embed_dim": EMBED_DIM,
        "mmdemo_conv_stem": CONV_STEM,
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 128, "layers": 3, "head_width": 32,
                       "attentional_pool": True, "attn_pooler_heads": 4, "output_tokens": True},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128, "heads": 4,
                     "layers": 2, "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128, "heads": 4,
                           "layers": 2, "attn_pooler_heads": 4},
        "custom_text": True,
    }
