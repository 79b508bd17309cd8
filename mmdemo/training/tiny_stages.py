"""The tiny bundle's training stages: CLIP (+ an audio tower shaping its text tower),
the shipped audio tower against that frozen text tower, then CoCa.

Each stage trains, writes its weights into the bundle folder and adds its losses and
timings to the build report; :mod:`mmdemo.training.build_tiny` decides which run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.atomic import atomic_save_file
from mmdemo.hashing import file_hash
from mmdemo.training import tiny_configs
from mmdemo.training.tiny_losses import AttributeProbe, contrastive_loss, cosine_lr, to_pixels

CLIP_NAME, COCA_NAME = "mmdemo-tiny-clip", "mmdemo-tiny-coca"


def _step(opt, sched, loss: torch.Tensor, clip_params=None) -> None:
    """One optimiser step; ``clip_params`` get their gradient norm clipped to 1."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
    opt.step(); sched.step()


def _show(pbar, step: int, **losses: torch.Tensor) -> None:
    if hasattr(pbar, "set_postfix") and step % 20 == 0:
        pbar.set_postfix(**{k: f"{v.item():.3f}" for k, v in losses.items()})


def _save_model(model: torch.nn.Module, path: Path, arch: str, seed: int) -> None:
    atomic_save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path,
                     {"format": "pt", "mmdemo": json.dumps({"arch": arch, "seed": seed})})


def ends(values: list[float], k: int = 20) -> dict:
    """First and last k-step mean of a loss curve: enough to see it fell."""
    k = max(1, min(k, len(values) // 2 or 1))
    return {"first": round(float(np.mean(values[:k])), 4), "last": round(float(np.mean(values[-k:])), 4)}


def _texts_and_negatives(clip, tok, texts: list[str], negatives: list[str]):
    """Normalised text embeddings of ``texts`` and of their hard negatives, in one pass of the text tower."""
    both = F.normalize(clip.encode_text(tok(texts + negatives)), dim=-1)
    return both[:len(texts)], both[len(texts):]


def clip_stage(opts, out: Path, tok, pools, rng: np.random.Generator, bar, report: dict) -> None:
    from mmdemo.models.audio_tower import PITCH_BINS, AudioTower
    from mmdemo.models.open_clip_backend import create_untrained

    n_img, n_snd, B, SB = len(pools.scenes), len(pools.sounds), opts.batch_size, opts.sound_batch_size
    # -- 1. CLIP + audio, jointly, through one text tower ------------------------------
    torch.manual_seed(opts.seed)
    clip = create_untrained(out / f"{CLIP_NAME}.json")
    # Trained beside the CLIP so its text tower learns to tell sounds apart; the shipped
    # audio tower is trained afresh against that text tower (audio_stage).
    audio = AudioTower(embed_dim=tiny_configs.EMBED_DIM, pitch_bins=PITCH_BINS)
    audio_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    probe = AttributeProbe(tiny_configs.EMBED_DIM)
    params = list(clip.parameters()) + list(audio.parameters()) + [audio_scale] + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, opts.clip_steps))
    clip.train(); audio.train()
    losses = []
    t0 = time.perf_counter()
    for step in (pbar := bar(range(opts.clip_steps), desc="clip+audio")):
        pools.refresh(opts.refresh_scenes, opts.refresh_sounds)
        i = rng.integers(0, n_img, B)
        images, texts, keys, drawn, negs = pools.scene_batch(i)
        img_raw = clip.encode_image(to_pixels(images))
        img = F.normalize(img_raw, dim=-1)
        txt, neg = _texts_and_negatives(clip, tok, texts, negs)
        loss_i = contrastive_loss(img, txt, clip.logit_scale.exp().clamp(max=100), keys, neg, negs)
        loss_attr = probe.loss(img_raw, AttributeProbe.targets(drawn))
        j = rng.integers(0, n_snd, SB)
        stexts, skeys, snegs = pools.sound_texts(j)
        aud = F.normalize(audio(torch.from_numpy(pools.audio_inputs[j].astype(np.float32))), dim=-1)
        stxt, sneg = _texts_and_negatives(clip, tok, stexts, snegs)
        loss_a = contrastive_loss(aud, stxt, audio_scale.exp().clamp(max=100), skeys, sneg, snegs)
        _step(opt, sched, loss_i + loss_a + opts.attribute_loss * loss_attr, params)
        losses.append((loss_i.item(), loss_a.item(), loss_attr.item()))
        _show(pbar, step, image=loss_i, audio=loss_a, attrs=loss_attr)
    report["clip_seconds"] = round(time.perf_counter() - t0, 1)
    report["clip_loss"] = ends([l[0] for l in losses])
    report["joint_audio_loss"] = ends([l[1] for l in losses])
    report["attribute_loss"] = ends([l[2] for l in losses])
    clip.eval()
    _save_model(clip, out / "tiny-clip.safetensors", CLIP_NAME, opts.seed)



def sound_only_rows(tok) -> list[int]:
    """Token ids of the words only sounds use ("chord", "minor", "beep"...): no scene
    caption contains them, so moving their embeddings leaves every image caption's
    text embedding (and the image half of the bundle) exactly as it was."""
    from mmdemo.toyworld import scenes, sounds

    return sorted(tok.stoi[w] for w in sounds.WORDS - scenes.WORDS if w in tok.stoi)


def restamp_heads(heads: Path, old: str, new: str) -> list[str]:
    """Heads that hear no sound (no audio input: their texts hold no sound-only word, so
    the CLIP's features of their inputs are bit for bit what they trained on) are told
    that the rewritten tiny-clip (``old`` -> ``new`` digest) is still theirs; heads with
    audio keep the old id and are refused until retrained (the heads stage does)."""
    from mmdemo.models.fusion import load_head, save_head

    done = []
    for path in sorted(heads.glob("*.safetensors")) if heads.is_dir() else []:
        head, meta = load_head(path)
        name, _, digest = str(meta.get("encoder", {}).get("clip", "")).partition(":")
        if digest != old or "audio" in meta.get("modalities", ()):
            continue
        meta = {k: v for k, v in meta.items() if k != "config"}
        meta["encoder"] = {**meta["encoder"], "clip": f"{name}:{new}"}
        save_head(path, head, meta, half=True)
        done.append(path.name)
    return done


def audio_stage(opts, out: Path, tok, bar, report: dict) -> None:
    """A fresh audio tower (log-mel, pitch and peak rows: models/audio_tower.py) trained
    against the shipped CLIP's frozen text tower. Only the embedding rows of sound-only
    words learn beside it: in the joint stage "a major chord" and "a minor chord" barely
    differed (nothing could hear the third), and a frozen text side would keep them so.
    Rewrites tiny-clip.safetensors with those rows (every other weight bit-identical)."""
    from safetensors.torch import load_file

    from mmdemo.models.audio_tower import PITCH_BINS, AudioTower, save_audio_tower
    from mmdemo.models.open_clip_backend import create_untrained
    from mmdemo.training.tiny_pools import Pools

    # Its own seeded streams, so `--stages audio` trains the tower a full build would.
    rng = np.random.default_rng(opts.seed + 5)
    torch.manual_seed(opts.seed + 5)
    t0 = time.perf_counter()
    pools = Pools(opts, np.random.default_rng(opts.seed + 6), bar, with_scenes=False)
    report["audio_data_seconds"] = round(time.perf_counter() - t0, 1)
    clip = create_untrained(out / f"{CLIP_NAME}.json")
    clip.load_state_dict(load_file(str(out / "tiny-clip.safetensors")))
    clip.eval()
    for p in clip.parameters():
        p.requires_grad_(False)
    words = clip.token_embedding.weight
    before = words.detach().clone()
    rows = torch.tensor(sound_only_rows(tok))
    keep = torch.ones(len(words), 1)
    keep[rows] = 0.0
    words.requires_grad_(True)
    words.register_hook(lambda g: g * (1 - keep))  # only the sound-only rows get a gradient
    audio = AudioTower(embed_dim=tiny_configs.EMBED_DIM, pitch_bins=PITCH_BINS)
    audio_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(audio.parameters()) + [audio_scale]
    # No weight decay on the word rows: AdamW would shrink the frozen ones too.
    opt = torch.optim.AdamW([{"params": params}, {"params": [words], "weight_decay": 0.0}], lr=opts.lr,
                            weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, opts.audio_steps, warmup=100))
    audio.train()
    losses = []
    t0 = time.perf_counter()
    for step in (pbar := bar(range(opts.audio_steps), desc="audio")):
        pools.refresh(0, opts.refresh_sounds)
        j = rng.integers(0, len(pools.sounds), opts.sound_batch_size)
        stexts, skeys, snegs = pools.sound_texts(j)
        stxt, sneg = _texts_and_negatives(clip, tok, stexts, snegs)
        aud = F.normalize(audio(torch.from_numpy(pools.audio_inputs[j].astype(np.float32))), dim=-1)
        loss = contrastive_loss(aud, stxt, audio_scale.exp().clamp(max=100), skeys, sneg, snegs)
        _step(opt, sched, loss, params)
        losses.append(loss.item())
        _show(pbar, step, loss=loss)
    report["audio_seconds"] = round(time.perf_counter() - t0, 1)
    report["audio_loss"] = ends(losses)
    moved = (words.detach() - before).abs().sum(1) > 0
    if bool(moved[keep[:, 0] > 0].any()):
        raise AssertionError("a word row shared with scene captions moved in the audio stage")
    report["audio_word_rows_moved"] = int(moved.sum())
    words.requires_grad_(False)
    audio.eval()
    old = file_hash(out / "tiny-clip.safetensors", 12)
    _save_model(clip, out / "tiny-clip.safetensors", CLIP_NAME, opts.seed)
    report["heads_restamped"] = restamp_heads(out / "heads", old, file_hash(out / "tiny-clip.safetensors", 12))
    save_audio_tower(audio, out / "tiny-audio.safetensors",
                     {"text_encoder": CLIP_NAME, "logit_scale": audio_scale.detach().exp().clamp(max=100).item()})


def coca_stage(opts, out: Path, tok, bar, report: dict) -> None:
    from safetensors.torch import load_file

    from mmdemo.models.open_clip_backend import create_untrained

    from mmdemo.training.tiny_pools import Pools

    # -- 3. CoCa captioner ------------------------------------------------------------------
    # Its own seeded streams and scene pool, so `--stages coca,heads` trains the same
    # captioner a full build would (the CLIP stage's have moved on by then).
    rng = np.random.default_rng(opts.seed + 1)
    torch.manual_seed(opts.seed + 1)
    t0 = time.perf_counter()
    pools = Pools(opts, np.random.default_rng(opts.seed + 2), bar, with_sounds=False)
    report["coca_data_seconds"] = round(time.perf_counter() - t0, 1)
    n_img, B = len(pools.scenes), opts.batch_size
    coca = create_untrained(out / f"{COCA_NAME}.json")
    # open_clip 3.3 never initialises the caption decoder's output projection (it is
    # torch.empty: arbitrary memory, sometimes 1e19); give it the usual transformer init.
    torch.nn.init.normal_(coca.text_decoder.text_projection, std=coca.text_decoder.width ** -0.5)
    # Start from the trained CLIP's image trunk (same ViT; CoCa adds an attentional
    # pooler): the decoder then learns to *say* shapes instead of learning to see them,
    # which on two cores is the difference between hours and minutes.
    clip_state = load_file(str(out / "tiny-clip.safetensors"))
    trunk = {k[len("visual."):]: v for k, v in clip_state.items()
             if k.startswith("visual.") and not k.startswith(("visual.proj", "visual.ln_post"))}
    missing, unexpected = coca.visual.load_state_dict(trunk, strict=False)
    report["coca_init_from_clip"] = len(trunk) - len(unexpected)
    coca.train()
    opt = torch.optim.AdamW(coca.parameters(), lr=opts.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, opts.coca_steps))
    losses = []
    t0 = time.perf_counter()
    for step in (pbar := bar(range(opts.coca_steps), desc="coca")):
        pools.refresh(opts.refresh_scenes, 0)
        i = rng.integers(0, n_img, B)
        caps = [pools.captions[k] for k in i]
        # CoCa predicts text[:, 1:] from text[:, :-1] (teacher forcing) inside forward.
        ids = tok(caps)
        outd = coca(to_pixels(pools.images[i]), ids)
        cap_loss = F.cross_entropy(outd["logits"].permute(0, 2, 1), outd["labels"], ignore_index=tok.pad_token_id)
        con_loss = contrastive_loss(outd["image_features"], outd["text_features"],
                                    outd["logit_scale"].clamp(max=100), caps)
        _step(opt, sched, cap_loss + 0.1 * con_loss, coca.parameters())
        losses.append(cap_loss.item())
        _show(pbar, step, caption=cap_loss)
    report["coca_seconds"] = round(time.perf_counter() - t0, 1)
    report["caption_loss"] = ends(losses)
    coca.eval()
    _save_model(coca, out / "tiny-coca.safetensors", COCA_NAME, opts.seed)
