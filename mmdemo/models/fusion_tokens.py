"""Fusion heads that read objects: the question meets every image patch and sound frame.

A pooled image vector cannot say *which* object is blue (mmdemo.head_kinds.POOLED_LIMIT);
the patch tokens of an image tower trained to describe each object (the tiny bundle: its
CoCa's) can. These heads keep their kind's meaning and apply it token by token:

- **attention**: the question (its pooled vector, then its words) is a query sequence that
  attends over each other modality's tokens through ``layers`` blocks (self-attention over
  the question, cross-attention to the tokens, MLP), one stream per modality: sounds and
  images do not compete for one softmax (measured: with one shared memory the sound, easy
  to match, starved the image of gradient, and the image half stayed at chance);
- **bilinear**: the question's vector times each token (a low-rank matrix product
  ``(U q) * (V k_j)``), an MLP per token, then max and mean over tokens;
- **gated**: a question-conditioned sigmoid gate on each token (a patch passes or not,
  independently: not a softmax), the gated tokens summed, then a gated multimodal unit
  decides how much each modality contributes.

The question is the text when there is one, else the first modality. Modalities without
tokens take part as one-token sequences of their pooled vector. Every head also reads the
scaled cosines of same-space pairs (the encoders' own opinion; on 200 rows the signal
learned first). Token sequences come zero-padded; a zero row is padding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmdemo.errors import MMDemoError
from mmdemo.models.fusion_base import FusionHead, _mlp, token_mask, trim_padding


class TokenHead(FusionHead):
    """Shared plumbing: which modality asks, and each modality's token sequence."""

    uses_tokens = True

    def __init__(self, *, prior: bool = True, **kw):
        super().__init__(**kw)
        self._config["reads"] = "tokens"
        self.query_modality = "text" if "text" in self.modalities else self.modalities[0]
        self.kv_modalities = [m for m in self.modalities if m != self.query_modality]
        self._raw = self._note_raw((i, j) for i in range(len(self.modalities))
                                   for j in range(i + 1, len(self.modalities)) if self._comparable(i, j))
        # The same-space cosines also reach the logits straight, through a few weights: on a
        # few hundred rows that route is learned long before the token paths stop memorising.
        # (The bundled heads were trained before it existed: their configs say no prior.)
        # Cosines sit in a narrow band around a positive mean: standardised first, the few
        # weights see the difference between classes rather than the common offset.
        n = len(self._raw)
        self.prior = (nn.Sequential(nn.BatchNorm1d(n), nn.Linear(n, self._config["num_classes"]))
                      if n and prior else None)
        if self.prior is not None:
            self._config["prior"] = True

    def _start_at_the_prior(self) -> None:
        """The token paths' last layer and the prior start at zero: a new head's first steps
        follow the encoders' cosines, and the token paths grow in from there (called once
        ``out`` exists)."""
        if self.prior is not None:  # the prior too: a random sign there is a wrong opinion to unlearn
            for layer in (self.out[-1], self.prior[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _logits(self, fused: torch.Tensor, cosines: list[torch.Tensor], xs: list[torch.Tensor]) -> torch.Tensor:
        logits = self.out(torch.cat([fused] + cosines, dim=-1))
        if self.prior is None:
            return logits
        # A pair with an input left out (zeros: the ablation) says nothing, rather than "no match".
        present = [(xs[i].abs().sum(-1, keepdim=True) > 0) & (xs[j].abs().sum(-1, keepdim=True) > 0)
                   for i, j in ((self.modalities.index(a), self.modalities.index(b)) for a, b in self.raw_pairs)]
        standard = self.prior[0](torch.cat(cosines, dim=-1)) * torch.cat(present, dim=-1).float()
        return logits + self.prior[1](standard)

    def _width(self, m: str) -> int:
        """Width of what ``m`` contributes as a sequence: its tokens, else its pooled vector."""
        return int(self._config["token_dims"].get(m, self.dims[m]))

    def _sequence(self, m: str, feats, tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, L, W], mask [B, L]) of modality ``m``: its tokens when the head was built with
        them, else its pooled vector as one token."""
        if m in self._config["token_dims"] and tokens and m in tokens:
            seq = tokens[m].float()
            return trim_padding(seq, token_mask(seq))
        if self._width(m) != self.dims[m]:  # built for tokens of another width: the pooled vector won't do
            raise MMDemoError("head_input_missing", f"This {self.kind} head reads {m} tokens; none were given.")
        x = feats[m].float().unsqueeze(1)
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


class CrossBlock(nn.Module):
    """Pre-norm block: self-attention over the queries, cross-attention to one modality's
    tokens (plus a learned 'nothing here' key, so a query may find nothing and a sequence
    with no real token never divides by zero), then an MLP."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_self = nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_kv = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width))

    def forward(self, x, x_pad, kv, kv_pad):
        y = self.norm_self(x)
        x = x + self.self_attn(y, y, y, key_padding_mask=x_pad, need_weights=False)[0]
        y, m = self.norm_q(x), self.norm_kv(kv)
        att, weights = self.cross(y, m, m, key_padding_mask=kv_pad, need_weights=True)
        x = x + att
        return x + self.mlp(self.norm_mlp(x)), weights


class AttentionHead(TokenHead):
    """Cross-modal attention: the question's tokens attend over each modality's tokens."""

    kind = "attention"

    def __init__(self, *, layers: int = 2, heads: int = 4, **kw):
        super().__init__(**kw)
        c, h = self._config, self._config["hidden"]
        c.update(layers=int(layers), heads=int(heads))
        q = self.query_modality
        self.q_pooled = nn.Linear(self.dims[q], h)
        self.q_tokens = nn.Linear(c["token_dims"][q], h) if q in c["token_dims"] else None
        self.kv_proj = nn.ModuleDict({m: nn.Linear(self._width(m), h) for m in self.kv_modalities})
        self.nothing = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, h)) for m in self.kv_modalities})
        self.streams = nn.ModuleDict({m: nn.ModuleList(CrossBlock(h, heads, c["dropout"]) for _ in range(layers))
                                      for m in self.kv_modalities})
        self.out = _mlp(h * len(self.kv_modalities) + len(self._raw), h, c["num_classes"], c["dropout"])
        self._start_at_the_prior()

    def _queries(self, feats, tokens):
        q = self.query_modality
        x = self.q_pooled(feats[q].float()).unsqueeze(1)
        pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        if self.q_tokens is not None and tokens and q in tokens:
            seq, mask = self._sequence(q, feats, tokens)
            x, pad = torch.cat([x, self.q_tokens(seq)], 1), torch.cat([pad, ~mask], 1)
        return x, pad

    def _run(self, feats, tokens):
        """(per-stream readouts, per-stream last-layer cross-attention [B, Lq, 1 + Lk], query padding)."""
        self._check(feats)
        x0, pad = self._queries(feats, tokens)
        reads, maps = [], {}
        for m in self.kv_modalities:
            seq, mask = self._sequence(m, feats, tokens)
            kv = torch.cat([self.nothing[m].expand(seq.shape[0], 1, -1), self.kv_proj[m](seq)], 1)
            kv_pad = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], 1)
            x = x0
            for block in self.streams[m]:
                x, weights = block(x, pad, kv, kv_pad)
            reads.append(x[:, 0])  # the pooled question's row reads out, as a class token does
            maps[m] = weights
        return reads, maps, pad

    def _check(self, feats):
        self._vectors(feats)  # a clear error when a modality is missing

    def forward(self, feats, tokens=None):
        reads, _, _ = self._run(feats, tokens)
        xs = self._vectors(feats)
        return self._logits(torch.cat(reads, dim=-1), self._cosines(xs), xs)

    def explain(self, feats, tokens=None):
        """Where the question looked: the last layer's cross-attention, averaged over the
        question's real tokens, per key (the 'nothing here' key left out), streams in order."""
        with torch.no_grad():
            _, maps, pad = self._run(feats, tokens)
            keep = (~pad).float().unsqueeze(-1)
            weights, names = [], []
            for m, w in maps.items():
                per_key = (w * keep).sum(1) / keep.sum(1).clamp(min=1)
                weights.append(per_key[:, 1:])
                names += [m] * (w.shape[-1] - 1)
        return {"attention": torch.cat(weights, 1).cpu().numpy(), "key_modalities": np.array(names)}


class BilinearHead(TokenHead):
    """Low-rank bilinear (matrix product) fusion, token by token: (U q) * (V k_j)."""

    kind = "bilinear"

    def __init__(self, **kw):
        super().__init__(**kw)
        c, h = self._config, self._config["hidden"]
        q = self.query_modality
        self.u = nn.ModuleDict({m: nn.Linear(self.dims[q], h) for m in self.kv_modalities})
        self.v = nn.ModuleDict({m: nn.Linear(self._width(m), h) for m in self.kv_modalities})
        self.per_token = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU())
                                        for m in self.kv_modalities})
        self.out = _mlp(2 * h * len(self.kv_modalities) + len(self._raw), h, c["num_classes"], c["dropout"])
        self._start_at_the_prior()

    def forward(self, feats, tokens=None):
        xs = self._vectors(feats)
        q = feats[self.query_modality].float()
        parts = []
        for m in self.kv_modalities:
            seq, mask = self._sequence(m, feats, tokens)
            z = self.per_token[m](self.u[m](q).unsqueeze(1) * self.v[m](seq))
            # An input left out (all padding) has no best token: 0, as its mean is.
            best = z.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
            parts += [torch.where(mask.any(1, keepdim=True), best, torch.zeros_like(best)),
                      (z * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)]
        return self._logits(torch.cat(parts, dim=-1), self._cosines(xs), xs)


class GatedHead(TokenHead):
    """Gates at two levels: the question opens or closes each patch/frame (sigmoid, each on
    its own), then a gated multimodal unit weighs the modalities."""

    kind = "gated"

    def __init__(self, **kw):
        super().__init__(**kw)
        c, h = self._config, self._config["hidden"]
        q = self.query_modality
        self.q_proj = nn.Linear(self.dims[q], h)
        self.v = nn.ModuleDict({m: nn.Linear(self._width(m), h) for m in self.kv_modalities})
        # The norm keeps the question-patch product in a range where gates move from the first step.
        self.token_gate = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
                                         for m in self.kv_modalities})
        n = 1 + len(self.kv_modalities)
        self.modality_gate = nn.Linear(h * n, n)
        self.out = _mlp(h + h * len(self.kv_modalities) + len(self.kv_modalities) + len(self._raw), h,
                        c["num_classes"], c["dropout"])
        self._start_at_the_prior()

    def _gate(self, feats, tokens):
        q = self.q_proj(feats[self.query_modality].float())
        summaries, strongest, token_gates = [], [], {}
        for m in self.kv_modalities:
            seq, mask = self._sequence(m, feats, tokens)
            k = self.v[m](seq)
            g = torch.sigmoid(self.token_gate[m](q.unsqueeze(1) * k)).squeeze(-1) * mask
            summaries.append((g.unsqueeze(-1) * torch.tanh(k)).sum(1) / (g.sum(1, keepdim=True) + 1.0))
            strongest.append(g.amax(1, keepdim=True))
            token_gates[m] = g
        by_modality = dict(zip(self.kv_modalities, summaries), **{self.query_modality: torch.tanh(q)})
        h = [by_modality[m] for m in self.modalities]  # gates in the head's modality order
        gates = torch.sigmoid(self.modality_gate(torch.cat(h, -1)))
        fused = sum(gates[:, i:i + 1] * h[i] for i in range(len(h)))
        return fused, summaries, strongest, gates, token_gates

    def forward(self, feats, tokens=None):
        xs = self._vectors(feats)
        fused, summaries, strongest, _, _ = self._gate(feats, tokens)
        return self._logits(torch.cat([fused] + summaries + strongest, dim=-1), self._cosines(xs), xs)

    def explain(self, feats, tokens=None):
        with torch.no_grad():
            self._vectors(feats)
            _, _, _, gates, token_gates = self._gate(feats, tokens)
        out = {"gates": gates.cpu().numpy(), "modalities": np.array(self.modalities)}
        if "image" in token_gates:
            out["image_token_gates"] = token_gates["image"].cpu().numpy()
        return out
