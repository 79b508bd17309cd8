"""Fusion heads over one pooled vector per modality.

Weighted sum and concatenation are the classic late and early fusion; they cannot bind
an attribute to its object among decoys (mmdemo.head_kinds.POOLED_LIMIT), and the app
says so beside them. The pooled bilinear, attention and gated heads are the designs
heads were trained with before those kinds read tokens (:mod:`mmdemo.models.fusion_tokens`):
kept so that head files saved then still load and answer as they did.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmdemo.models.fusion_base import FusionHead, _mlp


class WeightedSumHead(FusionHead):
    """Late-ish fusion: a learned convex combination of per-modality projections."""

    kind = "weighted_sum"

    def __init__(self, **kw):
        super().__init__(**kw)
        c = self._config
        self.proj = nn.ModuleList(nn.Linear(self.dims[m], c["hidden"]) for m in self.modalities)
        self.weights = nn.Parameter(torch.zeros(len(self.modalities)))
        self.out = _mlp(c["hidden"], c["hidden"], c["num_classes"], c["dropout"])

    def forward(self, feats, tokens=None):
        w = torch.softmax(self.weights, 0)
        fused = sum(w[i] * p(x) for i, (p, x) in enumerate(zip(self.proj, self._vectors(feats))))
        return self.out(fused)

    def explain(self, feats, tokens=None):
        return {"modality_weights": torch.softmax(self.weights, 0).detach().cpu().numpy()}


class ConcatHead(FusionHead):
    """Early fusion: an MLP over the concatenated vectors."""

    kind = "concat"

    def __init__(self, **kw):
        super().__init__(**kw)
        c = self._config
        self.out = _mlp(sum(self.dims.values()), c["hidden"], c["num_classes"], c["dropout"])

    def forward(self, feats, tokens=None):
        return self.out(torch.cat(self._vectors(feats), dim=-1))


class PooledBilinearHead(FusionHead):
    """Low-rank bilinear (matrix product) fusion: prod_m (U_m x_m), so pairwise
    agreement between modalities is one multiplication away."""

    kind = "bilinear"

    def __init__(self, **kw):
        super().__init__(**kw)
        c, n = self._config, len(self.modalities)
        self.proj = nn.ModuleList(nn.Linear(self.dims[m], c["hidden"]) for m in self.modalities)
        self.pair = nn.ModuleList(nn.Linear(self.dims[m], c["hidden"]) for m in self.modalities)
        self._pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        self._raw = self._note_raw((i, j) for i, j in self._pairs if self._comparable(i, j))
        self.out = _mlp(c["hidden"] * len(self._pairs) + sum(self._d(i) for i, _ in self._raw) + c["hidden"],
                        c["hidden"], c["num_classes"], c["dropout"])

    def forward(self, feats, tokens=None):
        xs = self._vectors(feats)
        a = [p(x) for p, x in zip(self.pair, xs)]
        # Every pair's learned elementwise product (a rank-`hidden` bilinear form), plus the sum.
        # Same-space pairs also get the raw product x_i * x_j: it starts the head at cosine-like
        # agreement (a diagonal bilinear form), which the learned products refine.
        prods = [a[i] * a[j] for i, j in self._pairs] + [xs[i] * xs[j] for i, j in self._raw]
        total = sum(p(x) for p, x in zip(self.proj, xs))
        return self.out(torch.cat(prods + [total], dim=-1))


class PooledGatedHead(FusionHead):
    """Gated multimodal unit: sigmoid gates decide how much each modality contributes."""

    kind = "gated"

    def __init__(self, **kw):
        super().__init__(**kw)
        c, h = self._config, self._config["hidden"]
        m = len(self.modalities)
        self.proj = nn.ModuleList(nn.Linear(self.dims[k], h) for k in self.modalities)
        self.gate = nn.Linear(sum(self.dims.values()), m)
        self._raw = [j for _, j in self._note_raw((0, j) for j in range(1, m) if self._comparable(0, j))]
        self._learned = [j for j in range(1, m) if j not in self._raw]
        self.out = _mlp(h + sum(self._d(j) for j in self._raw) + h * len(self._learned) + self._d(0), h,
                        c["num_classes"], c["dropout"])

    def _gates(self, xs):
        return torch.sigmoid(self.gate(torch.cat(xs, dim=-1)))

    def forward(self, feats, tokens=None):
        xs = self._vectors(feats)
        g = self._gates(xs)
        t = [torch.tanh(p(x)) for p, x in zip(self.proj, xs)]
        fused = sum(g[:, i:i + 1] * t[i] for i in range(len(xs)))
        # Products with the first modality's vector let gates act on agreement, not just
        # presence: raw within one space, of the learned projections across spaces.
        agree = [xs[j] * xs[0] for j in self._raw] + [t[j] * t[0] for j in self._learned]
        return self.out(torch.cat([fused] + agree + [xs[0]], dim=-1))

    def explain(self, feats, tokens=None):
        with torch.no_grad():
            return {"gates": self._gates(self._vectors(feats)).cpu().numpy(), "modalities": np.array(self.modalities)}


class PooledAttentionHead(FusionHead):
    """Cross-modal attention: the text (query) attends over the other modalities'
    tokens (image patches; pooled vectors as one-token sequences when no tokens)."""

    kind = "attention"
    uses_tokens = True

    def __init__(self, **kw):
        super().__init__(**kw)
        c = self._config
        h = c["hidden"]
        self.query_modality = "text" if "text" in self.modalities else self.modalities[0]
        self.kv_modalities = [m for m in self.modalities if m != self.query_modality]
        token_dims = {m: c["token_dims"].get(m, self.dims[m]) for m in self.kv_modalities}
        self.kv_proj = nn.ModuleDict({m: nn.Linear(d, h) for m, d in token_dims.items()})
        self.kv_pooled = nn.ModuleDict({m: nn.Linear(self.dims[m], h) for m in self.kv_modalities})
        self.type_emb = nn.Parameter(torch.zeros(len(self.kv_modalities), h))
        self.q_proj = nn.Linear(self.dims[self.query_modality], h)
        self.attn = nn.MultiheadAttention(h, 4, batch_first=True)
        qi = self.modalities.index(self.query_modality)
        # att * q is the learned query-key product for every modality; raw ones within a space only.
        self._raw = [j for _, j in self._note_raw((qi, j) for j in range(len(self.modalities))
                                                  if j != qi and self._comparable(qi, j))]
        self.out = _mlp(h * 2 + sum(self.dims.values()) + sum(self._d(j) for j in self._raw), h,
                        c["num_classes"], c["dropout"])

    def _keys(self, feats, tokens):
        seqs, names = [], []
        for i, m in enumerate(self.kv_modalities):
            if tokens and m in tokens and m in self._config["token_dims"]:
                s = self.kv_proj[m](tokens[m].float())
            else:
                s = self.kv_pooled[m](feats[m].float()).unsqueeze(1)
            seqs.append(s + self.type_emb[i])
            names += [m] * s.shape[1]
        return torch.cat(seqs, dim=1), names

    def _attend(self, feats, tokens):
        xs = self._vectors(feats)
        q = self.q_proj(feats[self.query_modality].float()).unsqueeze(1)
        kv, names = self._keys(feats, tokens)
        att, weights = self.attn(q, kv, kv, need_weights=True)
        return xs, q.squeeze(1), att.squeeze(1), weights.squeeze(1), names

    def forward(self, feats, tokens=None):
        xs, q, att, _, _ = self._attend(feats, tokens)
        qi = self.modalities.index(self.query_modality)
        agree = [xs[qi] * xs[j] for j in self._raw]
        return self.out(torch.cat([q, att * q] + xs + agree, dim=-1))

    def explain(self, feats, tokens=None):
        with torch.no_grad():
            _, _, _, w, names = self._attend(feats, tokens)
        return {"attention": w.cpu().numpy(), "key_modalities": np.array(names)}
