"""CLAP audio-text models (transformers' ``ClapModel`` + ``ClapProcessor``) behind the registry.

Weights come from where the catalog entry points (decided by
:func:`mmdemo.weights.resolve_weights`): ``arch = "hf-hub:laion/clap-htsat-unfused"``
(downloaded on first use, or read from the Hugging Face cache offline) or
``arch = "local-dir:/path"`` (a folder written by ``save_pretrained``). Safetensors
are preferred; a checkpoint with only ``pytorch_model.bin`` is read by transformers
with ``torch.load(weights_only=True)``, never by unpickling arbitrary objects.

The handle satisfies ``mmdemo.handles.AudioHandle`` exactly as the tiny encoder does,
so the Audio and Classify tabs use it unchanged: clips arrive mono at the model's own
rate (the project's loader resamples once, to 48 kHz for LAION's CLAPs), one window
is what the feature extractor takes without cropping (10 s), and the task layer
windows longer clips itself. Inputs move to the handle's device; results come back
as numpy on the CPU.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError
from mmdemo.scores import softmax
from mmdemo.weights import HUB, LOCAL_DIR, require_weights

CLAP_SOURCES = (HUB, LOCAL_DIR)
# Callers size batches for the tiny encoder (64, 128); ten-second windows through HTSAT
# are far heavier, so the handle caps what goes through in one forward pass.
MAX_AUDIO_BATCH = 16
DEFAULT_TEXT_BATCH = 64

# transformers' from_pretrained resolves and registers lazily; two first loads at once
# gain nothing, so loads take turns (the registry already loads each entry only once).
_LOAD_LOCK = threading.Lock()


class ClapHandle:
    """A loaded CLAP model (a :class:`mmdemo.handles.AudioHandle`)."""

    def __init__(self, model, processor, device: str, model_id: str):
        self.model, self.processor, self.device, self.model_id = model, processor, device, model_id
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = processor.tokenizer
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        # The longest clip the extractor takes whole; longer ones it would crop at random.
        self._window = int(self.feature_extractor.nb_max_samples)
        self.window_seconds = float(self._window) / self.sample_rate
        # Clips and texts share CLAP's own space, not a CLIP's (fusion heads ask).
        self.space = model_id
        self.embed_dim = int(model.config.projection_dim)
        # The text model's position table bounds a text, whatever the tokenizer says (one saved
        # without model_max_length claims 10**30): RoBERTa's positions start past the padding id.
        text_cfg = model.config.text_config
        positions = int(text_cfg.max_position_embeddings) - int(text_cfg.pad_token_id or 0) - 1
        self.max_text_tokens = min(int(self.tokenizer.model_max_length), positions)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @property
    def logit_scale(self) -> float:
        # CLAP learns one scale per direction; audio -> text is what zero-shot ranks by.
        return float(self.model.logit_scale_a.exp().item())

    def _features(self, waves: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """The extractor's inputs (on the CPU) for each clip's first window. Longer clips
        are cut here, not by the extractor: its rand_trunc crops at a random offset, so
        the same clip would embed differently on every call (Classify passes whole clips;
        the Audio tab windows them itself)."""
        waves = [np.asarray(w, np.float32)[: self._window] for w in waves]
        return self.feature_extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt")

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """The log-mel [n_mels, T] the model sees for one window (shown in the UI); short
        clips are repeated to the window, as CLAP's extractor pads them."""
        features = self._features([wave])["input_features"]  # [1, channels, T, n_mels]
        return features[0, 0].T.float().numpy()

    def encode_waves(self, waves: Sequence[np.ndarray], batch_size: int = MAX_AUDIO_BATCH) -> np.ndarray:
        """L2-normalised embeddings [N, D] of mono clips at ``sample_rate`` (the first window each)."""
        return self._encode(waves, batch_size)[0]

    def encode_wave_tokens(self, waves: Sequence[np.ndarray], batch_size: int = MAX_AUDIO_BATCH
                           ) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings [N, D], the audio tower's last-layer tokens [N, L, W]) in one pass, for
        fusion heads that attend over time and frequency (HTSAT's [C, H, W] map, flattened)."""
        return self._encode(waves, batch_size, tokens=True)

    def _encode(self, waves, batch_size: int, tokens: bool = False):
        if not len(waves):
            raise MMDemoError("audio_empty", "No audio to encode.")
        if any(np.size(w) == 0 for w in waves):  # the extractor's repeat-padding divides by the length
            raise MMDemoError("audio_empty", "An audio clip to encode has no samples.")
        out, grids = [], []
        with torch.inference_mode():
            batch_size = max(1, min(int(batch_size), MAX_AUDIO_BATCH))
            for start in range(0, len(waves), batch_size):
                inputs = {k: v.to(self.device) for k, v in self._features(waves[start:start + batch_size]).items()}
                res = self.model.get_audio_features(**inputs)
                out.append(F.normalize(res.pooler_output.float(), dim=-1).cpu().numpy())
                if tokens:
                    grid = res.last_hidden_state.float()  # [B, C, H, W]
                    grids.append(grid.flatten(2).transpose(1, 2).cpu().numpy())
        return np.concatenate(out), (np.concatenate(grids) if tokens else None)

    def encode_texts(self, texts: Sequence[str], batch_size: int = DEFAULT_TEXT_BATCH) -> np.ndarray:
        """L2-normalised embeddings [N, D] of texts in CLAP's space (cut at the text model's length)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                        max_length=self.max_text_tokens, return_tensors="pt")
                tokens = {k: v.to(self.device) for k, v in tokens.items()}
                emb = self.model.get_text_features(**tokens).pooler_output
                out.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def zero_shot(self, audio_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        """Softmax over texts of cosine similarity at CLAP's audio logit scale (as transformers'
        zero-shot-audio-classification pipeline computes it)."""
        return softmax(self.logit_scale * np.asarray(audio_embs) @ np.asarray(text_embs).T)


def _fit_truncation(model, feature_extractor) -> None:
    """"fusion" truncation stacks four mel copies that only fused models (enable_fusion)
    take; an unfused model with such a preprocessor config would fail on every clip."""
    if feature_extractor.truncation == "fusion" and not model.config.audio_config.enable_fusion:
        feature_extractor.truncation = "rand_trunc"


def _offline_and_uncached(repo_id: str) -> bool:
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.is_offline_mode():
        return False
    try:
        return not isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id: from_pretrained says so, in its own words
        return False


def load_clap(spec: EntrySpec, device: str, deps: dict | None = None) -> ClapHandle:
    source = require_weights(spec, CLAP_SOURCES)
    from transformers import ClapModel, ClapProcessor

    where = f"{source.kind}:{source.location}"
    # transformers reads a path that is not a folder as a hub repo id: a mistyped
    # "local-dir:models/clap" would download (or fail with a message about repo names).
    if source.kind == LOCAL_DIR and not Path(source.location).is_dir():
        raise MMDemoError("weights_not_found", f"CLAP folder for {spec.name!r} not found: {source.location} "
                                               "(local-dir: takes a folder written by save_pretrained).")
    if source.kind == HUB and _offline_and_uncached(source.location):
        raise MMDemoError("weights_not_found", f"Could not load CLAP model {spec.name!r} from {where}: it is not "
                                               "in the Hugging Face cache and HF_HUB_OFFLINE is set (unset it, "
                                               "on a machine with the network, to download it once).")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a server log, not a terminal: no "Loading weights" bars
    with _LOAD_LOCK:
        try:
            processor = ClapProcessor.from_pretrained(source.location)
            # fp32 whatever the checkpoint stores (transformers 5 keeps an fp16 file's dtype,
            # which CPU convolutions refuse); the catalog's memory figures assume it too.
            model = ClapModel.from_pretrained(source.location, dtype=torch.float32)
        except Exception as exc:  # OSError (not found/offline), ValueError/RuntimeError (corrupt), ...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise MMDemoError(
                "model_load_failed",
                f"Could not load CLAP model {spec.name!r} from {where}: {type(exc).__name__}: {first_line} "
                "(a local-dir: folder needs config.json, model.safetensors and the processor files that "
                "save_pretrained writes; an hf-hub: repo needs the network or the Hugging Face cache).",
            ) from exc
    _fit_truncation(model, processor.feature_extractor)
    model = model.to(device).eval()
    return ClapHandle(model, processor, device, spec.model_id)
