"""What the task layer may ask of a loaded model: typed handles, numpy in, numpy out.

The registry's backends return objects that satisfy these protocols. A handle
owns its device: it moves inputs there and returns results as numpy arrays on
the CPU, so the task layer never imports torch and works the same on cpu, cuda
and mps. ``modules()`` lists the handle's torch modules, for the registry only
(eval mode, memory accounting, unloading).

Structural typing (``typing.Protocol``) on purpose: a new backend (CLAP through
transformers, a timm tower) satisfies a protocol by having the methods, without
inheriting from anything here.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class ClipHandle(Protocol):
    """A CLIP-style image-text model: normalised embeddings in one shared space."""

    model_id: str  # names the exact weights: indexes, caches and heads are valid for it only
    device: str
    embed_dim: int | None
    context_length: int

    @property
    def logit_scale(self) -> float: ...

    def modules(self) -> list[Any]: ...

    def encode_images(self, images: Sequence[Any], batch_size: int = 64,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """L2-normalised embeddings [N, D] of PIL images."""

    def encode_image_tokens(self, images: Sequence[Any], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(pooled embeddings [N, D], last-layer patch tokens [N, L, W])."""

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised embeddings [N, D] of texts."""

    def encode_text_tokens(self, texts: Sequence[str],
                           batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pooled embeddings [N, D], token features [N, L, W], mask [N, L] of real tokens)."""

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts are longer than the model's context and get cut."""

    def zero_shot(self, image_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        """Softmax over texts of scaled cosine similarity, [N_images, N_texts]."""


@runtime_checkable
class CaptionerHandle(ClipHandle, Protocol):
    """A CoCa-style model: a ClipHandle that also writes captions."""

    def generate(self, images: Sequence[Any], options: Any = None) -> list[list[str]]:
        """Captions per image (``options``: a ``mmdemo.models.decode_options.DecodeOptions``)."""


@runtime_checkable
class AudioHandle(Protocol):
    """An audio-text model: clip and text embeddings in one shared space."""

    model_id: str
    device: str
    # Which embedding space clips land in: the model_id of the CLIP whose text space they
    # share (the tiny encoder), or the model's own (CLAP). Fusion heads compare vectors
    # elementwise only within one space.
    space: str
    sample_rate: int  # what clips must be resampled to before encode_waves
    window_seconds: float  # what one embedding covers; longer clips are windowed by the task layer

    @property
    def logit_scale(self) -> float: ...

    def modules(self) -> list[Any]: ...

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """The spectrogram the model sees for one window (shown in the UI)."""

    def encode_waves(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings [N, D] of mono clips at ``sample_rate``."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings [N, D] of texts in the audio model's space."""

    def zero_shot(self, audio_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        """Softmax over texts of scaled cosine similarity, [N_clips, N_texts]."""


@runtime_checkable
class FusionHandle(Protocol):
    """A trained fusion head over per-modality features."""

    name: str
    kind: str  # weighted_sum | concat | bilinear | attention | gated
    labels: list[str]
    modalities: tuple[str, ...]
    encoder: dict  # {slot: model_id} of the encoders it was trained on
    meta: dict
    device: str

    def modules(self) -> list[Any]: ...

    def predict(self, feats: dict[str, np.ndarray],
                tokens: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Class probabilities [N, C] (in ``labels`` order) from pooled features per
        modality [N, D] and, for heads that attend, token features [N, L, W]."""

    def explain(self, feats: dict[str, np.ndarray],
                tokens: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """The head's own account of an answer (modality weights, gates or attention),
        as numpy arrays and plain lists."""
