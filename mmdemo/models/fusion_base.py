"""What every fusion head shares: one interface over per-modality features.

Inputs: ``feats`` = {modality: [B, D_m]} pooled, L2-normalised embeddings, and
optionally ``tokens`` = {modality: [B, L, W_m]} token features (image patches, words,
sound frames; see :mod:`mmdemo.head_inputs`). Output: logits [B, C]. ``explain``
returns what a person can look at: the modality weights, gates or attention maps.

Each modality has its own dimension (``dims``) and embedding space (``spaces``: the
model id of the space its vectors live in). A raw elementwise product ``x_i * x_j``
is a diagonal bilinear form that starts at cosine agreement only when both vectors
live in one space (the tiny bundle: its audio was trained into tiny-clip's text
space); between spaces (a CLIP and a CLAP) it is noise, so heads build it only for
same-space, same-dim pairs and rely on learned projections for the others. Without
``dims``/``spaces`` (every head file written before they existed) each modality is
``embed_dim`` wide and all share one space, exactly as those heads were trained.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from mmdemo.errors import MMDemoError


def _mlp(d_in: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))


class FusionHead(nn.Module):
    kind = ""
    uses_tokens = False

    def __init__(self, *, modalities, num_classes, embed_dim=None, hidden=256, token_dims=None, dropout=0.1,
                 dims=None, spaces=None):
        super().__init__()
        self.modalities = tuple(modalities)
        missing = [m for m in self.modalities if m not in (dims or {})]
        if missing and embed_dim is None:
            raise ValueError(f"no dimension for {missing}: give embed_dim or dims")
        if spaces is not None and any(m not in spaces for m in self.modalities):
            raise ValueError("spaces must name every modality's space")
        self.dims = {m: int((dims or {}).get(m, embed_dim or 0)) for m in self.modalities}
        self.spaces = {m: str(spaces[m]) if spaces is not None else "" for m in self.modalities}
        self._config = dict(kind=self.kind, modalities=list(self.modalities),
                            embed_dim=None if embed_dim is None else int(embed_dim),
                            num_classes=int(num_classes), hidden=int(hidden),
                            token_dims=dict(token_dims or {}), dropout=float(dropout))
        # Written only when given, so a head built like the bundled ones has their config.
        if dims is not None:
            self._config["dims"] = dict(self.dims)
        if spaces is not None:
            self._config["spaces"] = dict(self.spaces)
        self.raw_pairs: list[tuple[str, str]] = []  # modality pairs multiplied elementwise, raw

    def config(self) -> dict:
        return json.loads(json.dumps(self._config))

    def _d(self, i: int) -> int:
        return self.dims[self.modalities[i]]

    def _comparable(self, i: int, j: int) -> bool:
        """Whether x_i * x_j means agreement: one space, one dimension."""
        a, b = self.modalities[i], self.modalities[j]
        return self.spaces[a] == self.spaces[b] and self.dims[a] == self.dims[b]

    def _note_raw(self, pairs) -> list[tuple[int, int]]:
        pairs = list(pairs)
        self.raw_pairs = [(self.modalities[i], self.modalities[j]) for i, j in pairs]
        return pairs

    def _vectors(self, feats) -> list[torch.Tensor]:
        missing = [m for m in self.modalities if m not in feats]
        if missing:
            raise MMDemoError("head_input_missing", f"This head needs {', '.join(self.modalities)}; "
                                                    f"missing: {', '.join(missing)}.")
        return [feats[m].float() for m in self.modalities]

    def _cosines(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """[B, 1] scaled cosine of every same-space pair (the encoders' own opinion of how
        well two inputs agree: on a few hundred rows, the fastest signal to learn from)."""
        n = len(xs)
        return [COSINE_SCALE * (xs[i] * xs[j]).sum(-1, keepdim=True)
                for i in range(n) for j in range(i + 1, n) if self._comparable(i, j)]

    def explain(self, feats, tokens=None) -> dict[str, np.ndarray]:
        return {}


# Cosines between same-space vectors lie in a narrow band (the tiny bundle's image-text
# ones in about 0..0.5); scaled, they reach an MLP's useful range from the first step.
COSINE_SCALE = 10.0


def token_mask(tokens: torch.Tensor) -> torch.Tensor:
    """[B, L] True where a token is real. Token sequences come zero-padded (words of
    different lengths; a modality left out is all zeros: mmdemo.head_inputs), so a row of
    zeros is padding."""
    return tokens.abs().sum(-1) > 0


def trim_padding(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns no row uses (texts are padded to the tokenizer's context,
    77 for a real CLIP, while questions are a dozen words): attention costs less."""
    used = int(mask.any(0).nonzero().max().item()) + 1 if bool(mask.any()) else 1
    return tokens[:, :used], mask[:, :used]
