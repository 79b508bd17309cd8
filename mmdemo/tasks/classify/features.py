"""Dataset features, extracted once per (dataset, encoders) and cached.

Why cache: the encoders are frozen, so a dataset's features never change for one
encoder. Extracting them once (in batches) and training every head on the same
tensors makes a training epoch cost milliseconds instead of a full encoding pass.
The tensors themselves are made by :mod:`mmdemo.features`; this module only picks
keys, batches and the cache, so it needs no torch (and imports that module, which
does, only when features are needed: building the app stays free of torch).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mmdemo.errors import MMDemoError
from mmdemo.hashing import content_hash
from mmdemo.tasks.classify.datasets import Dataset

if TYPE_CHECKING:  # pragma: no cover
    from mmdemo.features import FeatureSet

FEATURE_BATCH = 256


# Bumped when what a feature file holds changes (2: word and frame tokens, patch tokens of
# the profile's token tower), so files of the older layout are never read as the new one.
FEATURES_LAYOUT = 2


def _feature_key(ds_hash: str, modalities: tuple[str, ...], label_names, clip, audio, token_tower=None) -> str:
    ids = [clip.model_id, audio.model_id if audio is not None and "audio" in modalities else "",
           token_tower.model_id if token_tower is not None else ""]
    return content_hash(json.dumps([FEATURES_LAYOUT, ds_hash, list(modalities), list(label_names), ids]).encode())[:32]


class FeatureCache:
    """Dataset features by (content hash, encoders): a couple in memory, all on disk."""

    def __init__(self, cache_dir: str | Path | None, keep: int = 2, keep_files: int = 8):
        self.dir = Path(cache_dir) / "features" if cache_dir is not None else None
        self.keep, self.keep_files = keep, keep_files
        self._mem: OrderedDict[str, "FeatureSet"] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> "FeatureSet | None":
        from mmdemo.features import read_features

        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        if self.dir is None or not (self.dir / f"{key}.safetensors").is_file():
            return None
        try:
            fs = read_features(self.dir / f"{key}.safetensors")
        except (MMDemoError, OSError):
            return None  # a damaged cache file is only a cache: recompute
        self._remember(key, fs)
        return fs

    def put(self, key: str, fs: "FeatureSet") -> None:
        from mmdemo.features import save_features

        self._remember(key, fs)
        if self.dir is not None:
            try:
                save_features(fs, self.dir / f"{key}.safetensors")
                self._prune()
            except OSError:
                pass  # a read-only or full disk only costs re-encoding next time

    def _prune(self) -> None:
        """Keep the most recently written datasets only: features of big datasets are large."""
        files = sorted(self.dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep_files:]:
            old.unlink(missing_ok=True)

    def _remember(self, key: str, fs: "FeatureSet") -> None:
        with self._lock:
            self._mem[key] = fs
            self._mem.move_to_end(key)
            while len(self._mem) > self.keep:
                self._mem.popitem(last=False)


def dataset_features(ds: Dataset, clip, audio=None, *, cache: FeatureCache | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None, token_tower=None) -> tuple["FeatureSet", bool]:
    """(FeatureSet, from_cache): features of every example, extracted in batches once."""
    from mmdemo.features import concat_features, encoder_spaces, extract_features
    from mmdemo.training.fusion_trainer import TrainingCancelled

    if "audio" in ds.modalities and audio is None:
        raise MMDemoError("audio_model_missing", "This dataset has audio, but the active profile has no audio model; "
                                                 "pick a profile with one (e.g. tiny) or drop the audio column.")
    key = _feature_key(ds.content_hash, ds.modalities, ds.label_names, clip, audio, token_tower)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            if not hit.spaces:  # written before spaces were recorded: the key names the encoders
                hit.spaces = {m: s for m, s in encoder_spaces(clip, audio).items() if m in hit.pooled}
            return hit, True
    parts = []
    for s in range(0, len(ds), FEATURE_BATCH):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("training_cancelled", "Training was cancelled while reading features; "
                                                          "previously saved heads are unchanged.")
        parts.append(extract_features(ds.examples[s:s + FEATURE_BATCH], clip,
                                      audio if "audio" in ds.modalities else None, label_names=ds.label_names,
                                      token_tower=token_tower))
        if progress is not None:
            progress(min(s + FEATURE_BATCH, len(ds)), len(ds))
    fs = concat_features(parts)
    if cache is not None:
        cache.put(key, fs)
    return fs, False
