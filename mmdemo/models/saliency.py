"""Where in an image a CLIP-style ViT matched a text: maps over the patch grid.

Two methods, for any open_clip ViT (the tiny bundle's and real ones alike):

``tokens``: patch-token similarity. Each patch's token goes through the same final
LayerNorm and projection as the pooled token and is compared with the text embedding by
cosine. The last block is read through its value path only (Zhou, Loy and Dai 2022,
MaskCLIP: the value projection and output projection, without the attention mixing,
the residual and the MLP), because the last layer's own patch tokens are not trained to
land in the shared space: on two-object generated scenes the tiny CLIP's peak fell in
the named object's box 0.71 of the time this way, 0.28 from the raw last-layer tokens.
One forward pass.

``chefer``: gradient-weighted attention relevance (Chefer, Gur and Wolf 2021, "Generic
attention-model explainability for interpreting bi-modal and encoder-decoder
transformers", eq. 5-6): the image-text cosine is differentiated by every layer's
attention probabilities; per layer, the heads' mean of ``(grad * attention)^+`` is
added to a running relevance ``R <- R + A R`` (from the identity); the map is the
pooled token's row of R over the patches. One forward and one backward pass.

Both return one [grid_h, grid_w] map per image, not normalised; the task layer scales
and draws them, placing each token at the centre of its receptive field
(:func:`token_geometry`): a convolutional stem's tokens sit half a patch up-left of a
patchify grid's, and drawing them on the patch grid instead put the tiny CLIP's peak
in the named object's box 0.76 of the time rather than 0.93.
"""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.errors import MMDemoError

METHODS = ("tokens", "chefer")


def _grid(visual, n_patches: int) -> tuple[int, int]:
    grid = getattr(visual, "grid_size", None)
    if grid and grid[0] * grid[1] == n_patches:
        return int(grid[0]), int(grid[1])
    side = int(math.isqrt(n_patches))
    return side, n_patches // side


def _vit(model):
    visual = getattr(model, "visual", None)
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if visual is None or blocks is None or not hasattr(visual, "_embeds"):
        raise MMDemoError("saliency_unsupported", "Maps of where an image matched a text need a ViT image tower; "
                                                  "this model has none (e.g. a ResNet CLIP).")
    return visual, blocks


def token_geometry(model) -> dict:
    """Where token (i, j) looks, in the model's input pixels: its receptive field's
    centre is ``offset + stride * (i, j)`` (continuous coordinates, pixel k spans
    [k, k+1)); ``size`` is the input side. Composed from the stem's convolutions, so a
    patchify conv (kernel = stride = 16) gives offset 8 and a conv stem its own."""
    visual, _ = _vit(model)
    conv1 = visual.conv1
    convs = [m for m in conv1.modules() if isinstance(m, torch.nn.Conv2d)] if isinstance(conv1, torch.nn.Module) else []
    scale, shift = 1.0, 0.0  # token index m -> input index scale * m + shift
    for conv in convs:
        k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0] if isinstance(conv.padding, tuple) else 0
        shift += scale * (-p + (k - 1) / 2)
        scale *= s
    size = visual.image_size
    return {"stride": scale, "offset": shift + 0.5, "size": int(size[0] if isinstance(size, (tuple, list)) else size)}


def _blocks_before_last(visual, blocks, pixels: torch.Tensor) -> torch.Tensor:
    x = visual._embeds(pixels)
    for block in blocks[:-1]:
        x = block(x)
    return x


def token_maps(model, pixels: torch.Tensor, text_embs: torch.Tensor) -> np.ndarray:
    """Cosine of each patch's projected token (the last block's value path) with its text, [N, gh, gw]."""
    visual, blocks = _vit(model)
    if getattr(visual, "attn_pool", None) is not None:
        # A CoCa's tower pools with attention before its final norm and projection, so its
        # patch tokens are not in the space those map into (and may not even fit them).
        raise MMDemoError("saliency_unsupported", "Patch-token similarity needs a CLIP whose patch tokens share "
                                                  "the pooled token's projection; this model pools with attention "
                                                  "(a CoCa). Use the 'chefer' method.")
    last = blocks[-1]
    with torch.inference_mode():
        x = _blocks_before_last(visual, blocks, pixels)
        attn = getattr(last, "attn", None)
        if isinstance(attn, torch.nn.MultiheadAttention) and getattr(attn, "_qkv_same_embed_dim", False):
            v = F.linear(last.ln_1(x), *(w.chunk(3)[2] if w is not None else None
                                         for w in (attn.in_proj_weight, attn.in_proj_bias)))
            x = attn.out_proj(v)
        else:  # a custom block: its own output tokens, the plain way
            x = last(x)
        tokens = visual.ln_post(x[:, 1:])
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        sims = torch.einsum("nld,nd->nl", F.normalize(tokens, dim=-1), F.normalize(text_embs, dim=-1))
    gh, gw = _grid(visual, sims.shape[1])
    return sims.reshape(-1, gh, gw).float().cpu().numpy()


def _attend(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``block``'s forward (open_clip's ResidualAttentionBlock over nn.MultiheadAttention),
    with its attention probabilities [N, heads, L, L] kept for the gradient."""
    attn = block.attn
    if not isinstance(attn, torch.nn.MultiheadAttention) or not getattr(attn, "_qkv_same_embed_dim", True):
        raise MMDemoError("saliency_unsupported", "The gradient-weighted map needs standard attention blocks; "
                                                  "this model's are custom. Use the 'tokens' method.")
    h = block.ln_1(x)
    n, length, width = h.shape
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(width // heads), dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(n, length, width)
    x = x + block.ls_1(attn.out_proj(out))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, probs


def chefer_maps(model, pixels: torch.Tensor, text_embs: torch.Tensor,
                contrast_embs: torch.Tensor | None = None) -> np.ndarray:
    """Gradient-weighted attention relevance of the pooled token over the patches, [N, gh, gw].

    With ``contrast_embs`` [C, D] (the other candidates of a ranking), the target is the
    text's log-probability among them instead of its cosine: where the image matched
    this text rather than the others."""
    visual, blocks = _vit(model)
    with torch.enable_grad():
        # Gradients flow from the pixels (the weights may not ask for any); autograd.grad
        # leaves the shared model's .grad untouched, so concurrent requests cannot mix.
        x = visual._embeds(pixels.detach().clone().requires_grad_(True))
        all_probs = []
        for block in blocks:
            x, probs = _attend(block, x)
            all_probs.append(probs)
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        pooled = F.normalize(pooled, dim=-1)
        sims = (pooled * F.normalize(text_embs, dim=-1)).sum(-1)
        if contrast_embs is not None and len(contrast_embs):
            others = pooled @ F.normalize(contrast_embs, dim=-1).T
            logits = torch.cat([sims[:, None], others], dim=1) * model.logit_scale.exp().detach()
            sims = torch.log_softmax(logits, dim=1)[:, 0]
        score = sims.sum()
        grads = torch.autograd.grad(score, all_probs)
        n, length = x.shape[0], x.shape[1]
        relevance = torch.eye(length, device=x.device).expand(n, length, length).clone()
        for probs, grad in zip(all_probs, grads):
            cam = (grad * probs).clamp(min=0).mean(dim=1).detach()
            relevance = relevance + cam @ relevance
    # The class token pools in a CLIP; an attentional pooler (CoCa) or average pooling
    # reads every token, so their relevance is the mean of all rows.
    row = relevance[:, 0] if getattr(visual, "pool_type", "tok") == "tok" and visual.attn_pool is None \
        else relevance.mean(dim=1)
    patches = row[:, 1:]
    gh, gw = _grid(visual, patches.shape[1])
    return patches.reshape(-1, gh, gw).float().cpu().numpy()


def saliency_maps(model, pixels: torch.Tensor, text_embs: torch.Tensor, method: str,
                  contrast_embs: torch.Tensor | None = None) -> np.ndarray:
    """One [gh, gw] map per (image, text) pair by ``method`` (see the module's docstring)."""
    if method not in METHODS:
        raise MMDemoError("saliency_method_unknown", f"Unknown map method {method!r}; pick one of {', '.join(METHODS)}.")
    if method == "tokens":
        return token_maps(model, pixels, text_embs)
    return chefer_maps(model, pixels, text_embs, contrast_embs)
