"""Evaluate the tiny bundle on freshly generated data: ``python -m mmdemo eval --json``.

The data seed is one the build never uses, so every number is on unseen samples.
Retrieval counts a hit when the retrieved item has the *same content* as the query
(the generated world repeats content, e.g. two scenes with one large red star on a
plain background; either is a correct answer).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from mmdemo.training import tiny_configs
from mmdemo.training.bundle_io import load_bundle
from mmdemo.training.calibrate import second_renderers
from mmdemo.training.sound_eval import evaluate_sounds


def recall_at(sim: np.ndarray, query_keys: list[str], cand_keys: list[str], ks=(1, 5)) -> dict:
    order = np.argsort(-sim, axis=1)
    cand = np.asarray(cand_keys, dtype=object)
    out = {}
    for k in ks:
        hits = [q in set(cand[order[i, :k]]) for i, q in enumerate(query_keys)]
        out[f"R@{k}"] = round(float(np.mean(hits)), 4)
    return out


def caption_scores(generated: list[str], scenes_: list) -> dict:
    from mmdemo.toyworld.scenes import caption, parse_caption

    right = total = exact = 0
    for text, scene in zip(generated, scenes_):
        got = Counter(parse_caption(text))
        for obj in scene.objects:
            total += 1
            key = (obj.size, obj.colour, obj.shape)
            if got[key] > 0:
                right += 1
                got[key] -= 1
        exact += text == caption(scene)
    return {"attribute_accuracy": round(right / max(1, total), 4), "exact_match": round(exact / max(1, len(generated)), 4),
            "n": len(generated)}


def evaluate(bundle: Path, n: int = 1000, seed: int = 987654, caption_n: int = 300, task_n: int = 1000,
             baseline_n: int = 2000, device: str = "cpu", second: bool = True, sections: dict | None = None) -> dict:
    """Every metric on the first generator (the one the bundle trained on, fresh seeds),
    then, with ``second``, the same on the second generator (never trained on) under
    ``"second_generator"``, with the gaps (second - first) under ``"robustness_gap"``.

    ``sections``: {name: (fn, also_second)} of evaluations of the app's own features,
    which live in the task layer above this one (``mmdemo.tasks.world_eval.SECTIONS``,
    handed in by the CLI): ``fn(clip, audio, seed=, n=, image=, sound=)`` -> dict."""
    from mmdemo.toyworld import scenes, sounds

    started = time.perf_counter()
    clip, coca, audio = load_bundle(Path(bundle), device)
    size = tiny_configs.IMAGE_SIZE
    out: dict = {"seed": seed, "candidates": n}
    out.update(_world_metrics(clip, coca, audio, np.random.default_rng(seed), n=n, caption_n=caption_n,
                              image=lambda s: scenes.render_scene(s, size=size), sound=sounds.render_sound))
    out["fusion"] = evaluate_heads(Path(bundle), clip, audio, seed=seed, task_n=task_n, baseline_n=baseline_n,
                                   token_tower=coca)
    for name, (fn, _) in (sections or {}).items():
        out[name] = fn(clip, audio, seed=seed, n=min(n, 500))
    if second:
        image2, sound2 = second_renderers(audio.sample_rate, seed, size)
        two = _world_metrics(clip, coca, audio, np.random.default_rng(seed), n=n, caption_n=caption_n,
                             image=image2, sound=sound2)
        two["fusion"] = evaluate_heads(Path(bundle), clip, audio, seed=seed, task_n=task_n, baseline_n=0,
                                       render=(image2, sound2), token_tower=coca)
        out["second_generator"] = two
        out["robustness_gap"] = robustness_gap(out, two)
        out["out_of_domain"] = _out_of_domain(clip, coca, audio, seed, image2, sound2, n=min(n, 500))
        # Last: they draw looks from image2/sound2, which would shift the sections above.
        for name, (fn, also_second) in (sections or {}).items():
            if also_second:
                two[name] = fn(clip, audio, seed=seed, n=min(n, 500), image=image2, sound=sound2)
    # Sweeps across the sound words' scales (a third renderer) and chords of both generators.
    out["sounds"] = evaluate_sounds(audio, seed, n=min(n, 100), sound2=sound2 if second else None)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _out_of_domain(clip, coca, audio, seed: int, image2, sound2, n: int = 500) -> dict:
    """Share of inputs flagged as unlike the bundle's world, by source (training/calibrate.py)."""
    from mmdemo.toyworld import scenes, sounds
    from mmdemo.training.calibrate import out_of_domain_report

    rng = np.random.default_rng(seed + 41)
    images = [Image.fromarray(image2(scenes.sample_scene(rng, split="any"))) for _ in range(n)]
    waves = [sound2(sounds.sample_sound(rng)) for _ in range(n)]
    return out_of_domain_report(clip, coca, audio, seed=seed, second_images=images, second_waves=waves, n=n)


# (section, metric) pairs compared between the two generators
GAP_METRICS = (("text_to_image", "R@1"), ("image_to_text", "R@1"), ("caption", "attribute_accuracy"),
               ("caption_heldout", "attribute_accuracy"), ("audio_to_text", "R@1"), ("text_to_audio", "R@1"))


def robustness_gap(first: dict, second: dict) -> dict:
    """second - first for each headline metric and each task's best fusion head."""
    from mmdemo.head_kinds import HEAD_KINDS

    gap = {f"{sec}.{key}": round(second[sec][key] - first[sec][key], 4) for sec, key in GAP_METRICS}
    for task, row in second.get("fusion", {}).items():
        mine = [v for k, v in row.items() if k in HEAD_KINDS]
        theirs = [v for k, v in first["fusion"][task].items() if k in HEAD_KINDS]
        if mine and theirs:  # a bundle without heads for the task has nothing to compare
            gap[f"fusion.{task}.best"] = round(max(mine) - max(theirs), 4)
    return gap


def _world_metrics(clip, coca, audio, rng: np.random.Generator, *, n: int, caption_n: int, image, sound) -> dict:
    """Retrieval, captions and audio retrieval on content drawn from ``rng`` and rendered
    by ``image(scene)`` (uint8 HxWx3) and ``sound(spec)`` (mono at the audio model's rate)."""
    from mmdemo.models.decoding import DecodeOptions
    from mmdemo.toyworld import scenes, sounds

    out: dict = {}
    # image <-> text retrieval over n candidates
    sc = [scenes.sample_scene(rng, split="train") for _ in range(n)]
    imgs = [Image.fromarray(image(s)) for s in sc]
    caps = [scenes.caption(s) for s in sc]
    im, tx = clip.encode_images(imgs), clip.encode_texts(caps)
    sim = im @ tx.T
    out["image_to_text"] = recall_at(sim, caps, caps)
    out["text_to_image"] = recall_at(sim.T, caps, caps)

    # captions: in-distribution, and held-out attribute compositions
    opts = DecodeOptions(method="beam", num_beams=3, max_length=tiny_configs.CONTEXT_LENGTH - 2)
    for split, key in (("train", "caption"), ("heldout", "caption_heldout")):
        sc = [scenes.sample_scene(rng, split=split) for _ in range(caption_n)]
        gen = []
        for start in range(0, len(sc), 100):
            batch = [Image.fromarray(image(s)) for s in sc[start:start + 100]]
            gen += [c[0] for c in coca.generate(batch, opts)]
        out[key] = caption_scores(gen, sc)
    held = [scenes.sample_scene(rng, split="heldout") for _ in range(n)]
    hcaps = [scenes.caption(s) for s in held]
    him = clip.encode_images([Image.fromarray(image(s)) for s in held])
    out["text_to_image_heldout"] = recall_at((him @ clip.encode_texts(hcaps).T).T, hcaps, hcaps)

    # audio <-> text retrieval
    snd = [sounds.sample_sound(rng) for _ in range(n)]
    desc = [sounds.describe(s) for s in snd]
    au = audio.encode_waves([sound(s) for s in snd])
    at = audio.encode_texts(desc)
    sim = au @ at.T
    out["audio_to_text"] = recall_at(sim, desc, desc)
    out["text_to_audio"] = recall_at(sim.T, desc, desc)
    return out


def evaluate_heads(bundle: Path, clip, audio, *, seed: int, task_n: int, baseline_n: int,
                   render=None, token_tower=None) -> dict:
    """Accuracy of each shipped head next to single-modality baselines trained here
    (a concat head that sees one modality only) on fresh data; ``baseline_n=0`` skips
    the baselines. ``render``: (image(scene), sound(spec)) to draw the test examples
    with instead of the first generator."""
    from dataclasses import replace

    from mmdemo.head_kinds import HEAD_KINDS
    from mmdemo.models.fusion import load_head
    from mmdemo.features import extract_features
    from mmdemo.toyworld.tasks import TASKS, make_examples
    from mmdemo.training.fusion_trainer import FeatureSet, evaluate_head, train_heads

    results = {}
    for task, info in TASKS.items():
        uses_audio = "audio" in info.modalities
        examples = make_examples(task, task_n, seed=seed + 1, split="train", image_size=tiny_configs.IMAGE_SIZE,
                                 render=render is None)
        if render is not None:
            examples = [replace(e, image=render[0](e.scene), audio=render[1](e.sound) if e.sound else None)
                        for e in examples]
        test = extract_features(examples, clip, audio if uses_audio else None, label_names=list(info.labels),
                                token_tower=token_tower)
        row = {"chance": round(1 / len(info.labels), 4), "n": task_n}
        for kind in HEAD_KINDS:
            path = bundle / "heads" / f"{task}-{kind}.safetensors"
            if path.is_file():
                head, _ = load_head(path)
                row[kind] = round(float(evaluate_head(head, test)["accuracy"]), 4)
        if not baseline_n:
            results[task] = row
            continue
        train = extract_features(make_examples(task, baseline_n, seed=seed + 2, split="train", image_size=tiny_configs.IMAGE_SIZE),
                                 clip, audio if uses_audio else None, label_names=list(info.labels))
        for modality in info.modalities:
            def only(fs: FeatureSet) -> FeatureSet:
                return FeatureSet(pooled={modality: fs.pooled[modality]}, tokens={}, labels=fs.labels,
                                  label_names=fs.label_names)
            (res,) = train_heads(only(train), ["concat"], epochs=20, seed=0)
            row[f"{modality}_only"] = round(float(evaluate_head(res.head, only(test))["accuracy"]), 4)
        results[task] = row
    return results


def _ood_table(ood: dict | None) -> str:
    if not ood:
        return "(not measured: this bundle has no familiarity files)"
    rows = ["| encoder | threshold | " + " | ".join(("in-world", "second generator", "photos", "speech", "music"))
            + " |", "|---|---|---|---|---|---|---|"]
    for name, row in ood.items():
        if not isinstance(row, dict):
            continue
        cells = [row.get(k) for k in ("in_world", "second_generator", "photos", "speech", "music")]
        rows.append(f"| {name} | {row.get('threshold')} | "
                    + " | ".join("-" if c is None else f"{c:.1%}" for c in cells) + " |")
    return "\n".join(rows)


def _runs(words: list[str]) -> str:
    """["low", "low", "mid"] -> "low x2, mid x1": a sweep's words in order."""
    out: list[list] = []
    for w in words:
        if out and out[-1][0] == w:
            out[-1][1] += 1
        else:
            out.append([w, 1])
    return ", ".join(f"{w} x{n}" for w, n in out)


def _sweep_table(sounds: dict | None) -> str:
    """The sweeps of training/sound_eval.py as a Markdown table."""
    if not sounds:
        return "(not measured)"
    rows = ["| sweep | from .. to | words chosen, in order | right | monotone | flagged unlike |", "|---|---|---|---|---|---|"]
    for axis, key in (("pitch", "pitch_sweep"), ("loudness", "loudness_sweep")):
        for kind, row in sounds[key].items():
            if isinstance(row, dict):
                rows.append(f"| {axis}: {kind} | {row['points'][0]:g} .. {row['points'][-1]:g} | {_runs(row['words'])} "
                            f"| {row['correct']} | {row['monotone']} | {row['flagged_unfamiliar']} |")
    row = sounds["click_sweep"]
    rows.append(f"| clicks per second | {row['points'][0]:g} .. {row['points'][-1]:g} | {_runs(row['words'])} "
                f"| {row['correct']} | {row['monotone']} | {row['flagged_unfamiliar']} |")
    chords = "; ".join(f"{g}: major {r['major']}, minor {r['minor']} (n={r['n']} each)"
                       for g, r in sounds["chords"].items())
    return "\n".join(rows) + f"\n\nChords, major vs minor: {chords}."


def write_model_card(bundle: Path, report: dict, metrics: dict) -> None:
    import json

    from mmdemo.atomic import atomic_write_json, atomic_write_text
    from mmdemo.toyworld import meanings

    atomic_write_json(Path(bundle) / "eval.json", metrics)
    size = sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())
    card = f"""# mmdemo tiny bundle

A tiny CLIP, CoCa captioner, audio encoder and fusion heads, trained by
`python -m mmdemo build-tiny` (seed {report['options']['seed']}) on data generated by
`mmdemo.toyworld`. It knows **only the generated world** (64x64 scenes of 1-3 coloured
shapes on patterned backgrounds; synthetic tones, chirps, noises, clicks and chords).
On real photos or recordings its outputs are meaningless.

## Files ({size / 1e6:.1f} MB in all)
- `mmdemo-tiny-clip.json`, `tiny-clip.safetensors`: open_clip custom CLIP (ViT 64px/8 behind a convolutional stem {tiny_configs.CONV_STEM} (`mmdemo_conv_stem`, see `mmdemo/models/conv_stem.py`), 3 layers; text 3 layers), embed dim {tiny_configs.EMBED_DIM}
- `mmdemo-tiny-coca.json`, `tiny-coca.safetensors`: open_clip CoCa with a word-level vocabulary, decoded by mmdemo's own loop
- `tokenizer.json`: the word-level tokenizer (vocabulary of the generated world)
- `tiny-audio.safetensors`: per 10 ms frame 64 log-mel bands, 96 quarter-tones (100-1,600 Hz, relative to the
  frame's strongest) and the sample peak in dBFS, 4 s window -> conv + transformer -> tiny-clip's text space
- `heads/<task>-<kind>.safetensors`: fusion heads (weighted_sum, concat, bilinear, attention, gated) per task
- `tiny-clip.familiar.safetensors`, `tiny-coca.familiar.safetensors`: where each image encoder's in-world
  inputs lie (mean, covariance, a Mahalanobis threshold); `tiny-audio.familiar.safetensors`: a bank of
  in-world log-mel frames and a threshold; so the tabs can say when an input looks unlike the world (see
  *Out of domain* below)

## Training
Data is a stream: pools of {report['options'].get('image_pool')} scenes and {report['options'].get('sound_pool')} clips, of which
{report['options'].get('refresh_scenes')} scenes and {report['options'].get('refresh_sounds')} clips are replaced by new ones every step. A share
{report['options'].get('varied')} of them is drawn in a varied look or voice anywhere inside what the words mean (the
table below: sizes, colour jitter, rotation, line widths, background grey, pattern period and contrast,
anti-aliasing, blur, noise; pitches, phases, band-limited or naive waves, chirp ends and curves, click
rates and sounds, chord roots and onsets, envelopes, gaps, loudness), the rest in the generator's fixed one.
1. CLIP contrastive on captions, paraphrases and one-object mentions (each with a look-alike decoy
   scene), with hard negatives for a share {report['options'].get('hard_negatives')} of each batch (the same words re-bound:
   colours, shapes or sizes swapped between objects; for sounds a pitch, wave, direction, chord quality,
   loudness or order changed), jointly with the audio encoder against the same text tower, plus a training-only probe
   that names every object's colour, shape and size left to right from the image embedding
   (weight {report['options'].get('attribute_loss', 0)}; {report['options']['clip_steps']} steps, batch {report['options']['batch_size']});
2. the shipped audio encoder, afresh, against the frozen text tower ({report['options']['audio_steps']} steps, batch
   {report['options'].get('sound_batch_size')}); only the embedding rows of the words only sounds use ("chord", "minor",
   "beep"...) learn beside it, so every image caption embeds as after step 1;
3. CoCa: caption loss + 0.1 contrastive ({report['options']['coca_steps']} steps);
4. fusion heads ({report['options'].get('head_examples')} examples per task, {report['options'].get('head_epochs')} epochs, AdamW + cross-entropy
   with warm-up and cosine decay, the state with the best validation loss kept) on frozen features:
   pooled tiny-clip vectors, the question's words from tiny-clip's text tower, **patch tokens of
   tiny-coca** (the profile's `tokens`: they name each object, tiny-clip's do not) and tiny-audio's
   frame tokens. Weighted sum and concat read the pooled vectors only and cannot bind a colour to its
   shape (at chance on `scene_qa`, on purpose: the app says so beside them); bilinear, attention and
   gated read the tokens (`mmdemo/models/fusion_tokens.py`). Each head file records its accuracy on a
   fresh test set, the task's chance and the best single modality (`quality`).
Some colour+shape pairs are never shown in training (held out) to measure compositional generalisation.

Build time: {report.get('total_seconds', '?')} s on this machine. Losses: {json.dumps({k: report[k] for k in ('clip_loss', 'audio_loss', 'caption_loss') if k in report})}

## What the words mean
Both generators stay inside these ranges (`mmdemo/toyworld/meanings.py`); inputs made
the same way are what the bundle can read.

{meanings.table()}

## Metrics (`python -m mmdemo eval --json`, fresh seed {metrics['seed']})
`second_generator` holds the same metrics on the same content drawn by
`mmdemo/toyworld/second_generator.py`, written apart from the training generator and
never used in training (other drawing code and anti-aliasing, sizes, colours and line
widths anywhere in their word's range, other sound envelopes, phases, loudness, noise
filters and sample rates); `robustness_gap` is second minus first.
```json
{json.dumps(metrics, indent=2)}
```

## Sound words, swept
Does each sound word mean what people hear? `sounds` in the JSON above (`training/sound_eval.py`):
tones (sine, square and sawtooth from 80 Hz to 4 kHz), peaks (-44 to -1 dBFS) and click trains (2 to
24 per second) made by a third renderer (plain numpy, neither generator); at each point the model
chooses between the scale's words; "right" is the share that match the band holding the point
(the table under *What the words mean*), "monotone" that the words never step back down the scale.

{_sweep_table(metrics.get('sounds'))}

## Out of domain
The tabs say "this looks unlike anything the model was trained on" next to a result when the
input lies beyond a threshold set so that 1% of held-out in-world inputs are flagged
(`mmdemo/familiarity.py`, `training/calibrate.py`). An image: its embedding's Mahalanobis
distance from the in-world mean. A clip: its frames (log-mel, relative to the clip's loudest)
against their nearest in a bank of in-world frames, the clip scored by the 80th percentile of
its frames' distances; bank and threshold come from clips of *both* generators (fresh seeds,
not those measured here). Share of inputs flagged, by source (`out_of_domain` in the JSON
above): in-world (fresh first-generator inputs), `second_generator`, `photos` (scikit-image's
bundled photos, whole and four corner crops each), `speech` (espeak-ng: ten sentences, four
voices and speeds) and `music` (melodies of plucked notes over a bass line):

{_ood_table(metrics.get('out_of_domain'))}

## Limits
Generated world only; 64x64 images; a closed vocabulary (unknown words become `<unk>`);
audio windows of 4 s. Fusion heads expect features of exactly this tiny-clip, tiny-coca's patch
tokens (+ tiny-audio).
"""
    atomic_write_text(Path(bundle) / "MODEL_CARD.md", card)
