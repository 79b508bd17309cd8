"""Load a tiny bundle folder the way the app loads it (shared by the build, eval and calibration)."""

from __future__ import annotations

from pathlib import Path

from mmdemo.training.tiny_stages import CLIP_NAME, COCA_NAME


def bundle_handles(out: Path, device: str = "cpu"):
    """The bundle's CLIP and audio encoder, loaded the way the app loads them."""
    from mmdemo.catalog import EntrySpec
    from mmdemo.models.audio_backend import load_audio
    from mmdemo.models.open_clip_backend import load_clip

    clip = load_clip(EntrySpec("tiny-clip", "clip", "open_clip", config=out / f"{CLIP_NAME}.json",
                               weights=out / "tiny-clip.safetensors", tokenizer=out / "tokenizer.json"), device)
    # The same model id the registry gives the catalog entry (name + weights digest), so
    # the heads' "trained on" check accepts the bundle's own encoders.
    audio_spec = EntrySpec("tiny-audio", "audio", "mmdemo", weights=out / "tiny-audio.safetensors")
    audio = load_audio(audio_spec, device, {"text": clip})
    return clip, audio


def load_bundle(bundle: Path, device: str = "cpu"):
    """(CLIP, CoCa captioner, audio encoder) of a bundle folder."""
    from mmdemo.catalog import EntrySpec
    from mmdemo.models.open_clip_backend import load_captioner

    clip, audio = bundle_handles(bundle, device)
    coca = load_captioner(EntrySpec("tiny-coca", "captioner", "open_clip", config=bundle / f"{COCA_NAME}.json",
                                    weights=bundle / "tiny-coca.safetensors", tokenizer=bundle / "tokenizer.json"),
                          device)
    return clip, coca, audio
