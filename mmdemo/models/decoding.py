"""Caption decoding for open_clip CoCa models, without ``transformers``.

open_clip's ``CoCa.generate`` imports Hugging Face ``transformers`` for its
logits processors and beam scorer; this module re-implements the parts we use
(greedy, beam search, top-k / top-p sampling, repetition penalty, min length)
on top of the CoCa modules themselves.

Semantics follow ``CoCa.generate``: the prompt is ``[sot]``, each step runs
``model(images, text=tokens, image_latent=..., image_embs=..., output_labels=False)``
and the logits at the last position predict the next token; a sequence ends at
``eot``. There is no KV cache in open_clip's decoder, so every step re-runs the
text towers over the whole prefix (cheap at caption lengths).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from mmdemo.errors import MMDemoError
from mmdemo.models.decode_options import DecodeOptions  # noqa: F401  (re-exported: one import for callers)


def model_context_length(model) -> int:
    """How many text positions (sot included) the CoCa text tower and decoder can take."""
    sizes = [getattr(m, "context_length", None) for m in (getattr(model, "text", None),
                                                          getattr(model, "text_decoder", None), model)]
    sizes = [int(n) for n in sizes if isinstance(n, int) and n > 0]
    if not sizes:
        raise MMDemoError("decode_context_unknown",
                          "Cannot tell the model's text context length; is it an open_clip CoCa model?")
    return min(sizes)


def _process_logits(logits: Tensor, generated: Tensor, opts: DecodeOptions, *, eot_id: int,
                    banned: list[int]) -> Tensor:
    """Repetition penalty, banned ids, min length: shared by every method, so greedy == beam(1)."""
    logits = logits.float()
    if opts.repetition_penalty != 1.0 and generated.shape[1]:
        # CTRL (Keskar et al. 2019): shrink the logit of any token already used, whichever its sign
        seen = logits.gather(1, generated)
        seen = torch.where(seen > 0, seen / opts.repetition_penalty, seen * opts.repetition_penalty)
        logits = logits.scatter(1, generated, seen)
    logits[:, banned] = -math.inf
    if generated.shape[1] < opts.min_length:
        logits[:, eot_id] = -math.inf
    return logits


def _sample(logits: Tensor, opts: DecodeOptions, gen: torch.Generator) -> Tensor:
    logits = logits / opts.temperature
    if opts.method == "top_k":
        k = min(opts.top_k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    else:  # nucleus: the smallest set of top tokens whose probability reaches top_p
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly above each token; the top token always stays
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter(1, order, before >= opts.top_p)
        logits = logits.masked_fill(drop, -math.inf)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=gen).squeeze(1)


def _step_logits(model, images, rows: Tensor, img_of_row: Tensor, seqs: Tensor, latent: Tensor,
                 embs: Tensor) -> Tensor:
    idx = img_of_row[rows]
    out = model(images[idx], text=seqs[rows], image_latent=latent[idx], image_embs=embs[idx],
                output_labels=False)
    return out["logits"][:, -1]


def generate_tokens(model, images: Tensor, options: DecodeOptions, *, sot_id: int, eot_id: int, pad_id: int = 0,
                    context_length: int | None = None) -> list[list[list[int]]]:
    """For each image, ``options.num_return`` token-id lists (no sot/eot), best first.

    ``context_length`` optionally caps the whole sequence, sot and eot included, as a
    tokenizer would; the model's own text context length is always respected.
    """
    options.validate()
    if images.ndim != 4:
        raise MMDemoError("decode_bad_images",
                          f"Expected a batch of images [B, 3, H, W], got shape {tuple(images.shape)}.")
    n_ctx = model_context_length(model)
    # each step feeds sot + the words so far, so n_ctx positions allow at most n_ctx generated tokens
    limit = min(options.max_length, n_ctx)
    if context_length is not None:
        limit = min(limit, int(context_length) - 2)
    if limit < 1:
        raise MMDemoError("decode_context_too_short",
                          f"context_length {context_length} leaves no room for a caption (needs >= 3).")
    if images.shape[0] == 0:
        return []
    # pad marks the end of finished rows and sot only ever starts one: neither is a word
    banned = sorted({int(pad_id), int(sot_id)} - {int(eot_id)})

    _check_vocab(model, sot_id, eot_id)
    was_training = model.training
    model.eval()  # dropout would make even greedy decoding random; restored after, like CoCa.generate
    try:
        with torch.inference_mode():
            latent, embs = model._encode_image(images)
            if options.method == "beam":
                return _beam_search(model, images, latent, embs, options, limit, sot_id, eot_id, pad_id, banned)
            return _sequential(model, images, latent, embs, options, limit, sot_id, eot_id, pad_id, banned)
    finally:
        model.train(was_training)


def _check_vocab(model, sot_id: int, eot_id: int) -> None:
    """A tokenizer from another model would index past the embedding table, a bare IndexError."""
    sizes = []
    emb = getattr(getattr(model, "text", None), "token_embedding", None)
    if isinstance(emb, torch.nn.Embedding):
        sizes.append(emb.num_embeddings)
    proj = getattr(getattr(model, "text_decoder", None), "text_projection", None)
    if isinstance(proj, Tensor) and proj.ndim == 2:
        sizes.append(proj.shape[1])
    v = min(sizes, default=None)
    if v is not None and not (0 <= sot_id < v and 0 <= eot_id < v):
        raise MMDemoError("tokenizer_model_mismatch",
                          f"The tokenizer's special ids (sot {sot_id}, eot {eot_id}) do not fit the model's "
                          f"vocabulary of {v}; the tokenizer does not belong to this model.")


def _sequential(model, images, latent, embs, opts, limit, sot_id, eot_id, pad_id, banned):
    """Greedy and sampling: independent rows, num_return per image (1 for greedy)."""
    device = images.device
    b = images.shape[0]
    per = 1 if opts.method == "greedy" else opts.num_return
    img_of_row = torch.arange(b, device=device).repeat_interleave(per)
    n = b * per
    seqs = torch.full((n, 1), sot_id, dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    gen = None
    if opts.method != "greedy":
        # a private generator: reproducible per seed and leaves the global RNG untouched
        gen = torch.Generator(device=device)
        if opts.seed is None:
            gen.seed()
        else:
            gen.manual_seed(opts.seed)
    for step in range(limit):
        rows = alive.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        logits = _step_logits(model, images, rows, img_of_row, seqs, latent, embs)
        logits = _process_logits(logits, seqs[rows, 1:], opts, eot_id=eot_id, banned=banned)
        nxt = logits.argmax(dim=-1) if gen is None else _sample(logits, opts, gen)
        col = torch.full((n,), pad_id, dtype=torch.long, device=device)
        col[rows] = torch.where(nxt == eot_id, torch.full_like(nxt, pad_id), nxt)
        alive[rows[nxt == eot_id]] = False
        seqs = torch.cat([seqs, col[:, None]], dim=1)
    out: list[list[list[int]]] = [[] for _ in range(b)]
    for r, row in enumerate(seqs[:, 1:].tolist()):
        words = row[: row.index(pad_id)] if pad_id in row else row
        out[r // per].append(words)
    return out


def _beam_search(model, images, latent, embs, opts, limit, sot_id, eot_id, pad_id, banned):
    """Beam search with per-image finished hypotheses, scored sum(logprob) / length ** length_penalty
    (length counts the eot). An image stops once it holds num_beams finished hypotheses and its best
    running beam, scored at its current length, cannot beat the worst of them (the stopping rule of
    Hugging Face's BeamSearchScorer by default), so num_beams=1 is exactly greedy."""
    device = images.device
    b, k = images.shape[0], opts.num_beams
    img_of_row = torch.arange(b, device=device).repeat_interleave(k)
    seqs = torch.full((b * k, 1), sot_id, dtype=torch.long, device=device)
    # only the first beam is live at the start, otherwise the k copies of [sot] would fill the beam
    scores = torch.full((b, k), -math.inf, device=device)
    scores[:, 0] = 0.0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    lp = opts.length_penalty

    def add(i: int, score: float, words: list[int]) -> None:
        hyps = finished[i]
        hyps.append((score, words))
        hyps.sort(key=lambda h: -h[0])
        del hyps[k:]

    for step in range(limit):
        active = [i for i in range(b) if not done[i]]
        if not active:
            break
        act = torch.tensor(active, device=device)
        rows = (act[:, None] * k + torch.arange(k, device=device)).reshape(-1)
        logits = _step_logits(model, images, rows, img_of_row, seqs, latent, embs)
        logp = F.log_softmax(_process_logits(logits, seqs[rows, 1:], opts, eot_id=eot_id, banned=banned), dim=-1)
        v = logp.shape[-1]
        cand = (scores[act][:, :, None] + logp.view(len(active), k, v)).view(len(active), k * v)
        top_scores, top_idx = cand.topk(min(2 * k, k * v), dim=1)
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()

        new_rows = torch.arange(b * k, device=device)  # done images keep their rows as they are
        new_tok = torch.full((b * k,), pad_id, dtype=torch.long, device=device)
        new_scores = scores.clone()
        prefix = seqs[:, 1:].tolist()
        for a, i in enumerate(active):
            slot = 0
            for rank, (s, flat) in enumerate(zip(top_scores[a], top_idx[a])):
                beam, tok = divmod(flat, v)
                src = i * k + beam
                if tok == eot_id:
                    # like HF: an eot below the top k would not have survived as a beam, so it is no hypothesis
                    if rank < k and s > -math.inf:
                        add(i, s / (step + 1) ** lp, prefix[src])
                    continue
                new_rows[i * k + slot] = src
                new_tok[i * k + slot] = tok
                new_scores[i, slot] = s
                slot += 1
                if slot == k:
                    break
            best_running = new_scores[i, 0].item()
            if len(finished[i]) >= k and (best_running == -math.inf
                                          or finished[i][-1][0] >= best_running / (step + 1) ** lp):
                done[i] = True
        seqs = torch.cat([seqs[new_rows], new_tok[:, None]], dim=1)
        scores = new_scores

    out: list[list[list[int]]] = []
    words_all = seqs[:, 1:].tolist()
    for i in range(b):
        if not done[i]:  # hit the length limit: running beams compete as they are, without eot
            for j in range(k):
                s = scores[i, j].item()
                if s > -math.inf:
                    add(i, s / limit ** lp, words_all[i * k + j])
        hyps = [w for _, w in finished[i]][: opts.num_return]
        out.append([_strip(w, pad_id) for w in hyps])
    return out


def _strip(words: list[int], pad_id: int) -> list[int]:
    return words[: words.index(pad_id)] if pad_id in words else words


def _special_ids(tokenizer) -> tuple[int, int, int]:
    sot = getattr(tokenizer, "sot_token_id", None)
    eot = getattr(tokenizer, "eot_token_id", None)
    encoder = getattr(tokenizer, "encoder", None)
    if (sot is None or eot is None) and isinstance(encoder, dict):
        sot, eot = encoder.get("<start_of_text>"), encoder.get("<end_of_text>")
    if sot is None or eot is None:
        raise MMDemoError("tokenizer_no_special_ids",
                          f"Captioning needs a tokenizer with start/end-of-text ids; {type(tokenizer).__name__} "
                          "has none. Use the CoCa model's own open_clip tokenizer or an mmdemo word tokenizer.")
    pad = getattr(tokenizer, "pad_token_id", 0)
    return int(sot), int(eot), int(pad if isinstance(pad, int) else 0)


def decode_ids(tokenizer, ids: list[int]) -> str:
    """Token ids (no sot/eot) to text, for our WordTokenizer and open_clip's SimpleTokenizer."""
    decoder = getattr(tokenizer, "decoder", None)
    if isinstance(decoder, dict):  # SimpleTokenizer: its decode has no notion of special or unknown ids
        special = set(getattr(tokenizer, "all_special_ids", ()))
        ids = [i for i in ids if i in decoder and i not in special]
    return " ".join(tokenizer.decode(ids).split())


def generate_captions(model, images: Tensor, tokenizer, options: DecodeOptions) -> list[list[str]]:
    """For each image, ``options.num_return`` captions, best first."""
    sot, eot, pad = _special_ids(tokenizer)
    tokens = generate_tokens(model, images, options, sot_id=sot, eot_id=eot, pad_id=pad)
    return [[decode_ids(tokenizer, ids) for ids in per_image] for per_image in tokens]
