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


# A tiny CLAP (transformers' ClapModel): 0.34 M parameters, builds offline in a second.
# Text: a RoBERTa of width 32; audio: an HTSAT of width 128 with one block per stage.
TINY_CLAP_TEXT_CFG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                      "max_position_embeddings": 70}
TINY_CLAP_AUDIO_CFG = {"hidden_size": 128, "depths": [1, 1, 1, 1], "num_attention_heads": [1, 2, 4, 8],
                       "patch_embeds_hidden_size": 16, "enable_fusion": False}
TINY_CLAP_PROJECTION = 16
# Words the tiny BPE tokenizer is trained on (any text still tokenizes: byte-level BPE).
_TOKENIZER_TEXTS = ["the sound of a dog barking", "a rising chirp", "a falling chirp", "white noise", "pink noise",
                    "a low hum", "a high beep", "a chord", "rain on a roof", "This is a sound of {}."]


def save_tiny_clap(directory: Path, seed: int = 0):
    """A random tiny CLAP model with its processor, saved by ``save_pretrained`` into
    ``directory`` (a ``local-dir:`` folder: config.json, model.safetensors, processor and
    tokenizer files). Returns the model (eval mode) and the processor."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    directory = Path(directory)
    work = directory.parent / (directory.name + "-tokenizer")
    work.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_TOKENIZER_TEXTS * 4, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(work))
    tokenizer = RobertaTokenizer(vocab=str(work / "vocab.json"), merges=str(work / "merges.txt"), model_max_length=64)
    # rand_trunc/repeatpad: what unfused CLAPs use ("fusion" makes 4-channel input for fused ones only).
    extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, truncation="rand_trunc",
                                     padding="repeatpad")
    processor = ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    config = ClapConfig(text_config={**TINY_CLAP_TEXT_CFG, "vocab_size": len(tokenizer)},
                        audio_config=TINY_CLAP_AUDIO_CFG, projection_dim=TINY_CLAP_PROJECTION)
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return model, processor
