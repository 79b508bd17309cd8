"""Fusion heads: small modules over frozen encoder features, one interface, made by name.

Inputs: ``feats`` = {modality: [B, D_m]} pooled, L2-normalised embeddings, and
optionally ``tokens`` = {modality: [B, L, W_m]} token features (attention uses them).
Output: logits [B, C]. ``explain`` returns what a person can look at: the modality
weights, gates or attention maps.

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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmdemo.atomic import atomic_save_file
from mmdemo.errors import MMDemoError
from mmdemo.weights import read_safetensors

HEAD_KINDS = ("weighted_sum", "concat", "bilinear", "attention", "gated")
HEAD_META_KEY = "mmdemo_head"  # the safetensors metadata entry holding config, labels and encoders


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

    def explain(self, feats, tokens=None) -> dict[str, np.ndarray]:
        return {}


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


class BilinearHead(FusionHead):
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


class GatedHead(FusionHead):
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


class AttentionHead(FusionHead):
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


_KINDS = {cls.kind: cls for cls in (WeightedSumHead, ConcatHead, BilinearHead, AttentionHead, GatedHead)}


def create_head(kind: str, **kw) -> FusionHead:
    if kind not in _KINDS:
        raise MMDemoError("unknown_head_kind", f"Unknown head kind {kind!r}. Available: {', '.join(HEAD_KINDS)}.")
    return _KINDS[kind](**kw)


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
        head = create_head(kind, **cfg)
        head.load_state_dict(state)
        if not isinstance(meta.get("labels"), list) or len(meta["labels"]) != cfg["num_classes"]:
            raise ValueError("labels")
    except MMDemoError:
        raise
    except Exception:  # anything off in the metadata or the tensors: the file is not one of ours
        raise MMDemoError("not_a_head", f"{path.name} is not an mmdemo fusion head (missing or inconsistent "
                                        "metadata).") from None
    return head.to(device).eval(), meta
