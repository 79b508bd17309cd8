"""Does an input look like the world a model was trained on?

The tiny bundle knows only its generated world: shown a photo or speech it still
answers, as confidently as ever, in its own words. A :class:`Familiarity` holds the
mean and covariance of a model's features of held-out in-world inputs (an image
tower's mean patch token; an older bundle's audio embedding: whatever the handle measures) and a
threshold on the Mahalanobis distance from them, calibrated so a chosen share of
in-world inputs (1% by default) falls beyond it; tasks say so next to a result whose
input lies beyond it (``tasks/domain_notices.py``).

Clips are judged differently (:class:`FrameFamiliarity`): a pooled audio embedding
of a clip rendered by other code drifts out of the in-world cloud while every 10 ms
of it still sounds like the world, and speech lands inside it. So the audio tower's
familiarity keeps a bank of in-world log-mel frames (each relative to its clip's
loudest value) and scores a clip by how far its frames lie from their nearest in the
bank (a high quantile over the clip's frames, so a few odd frames at an onset don't
count): a syllable or a plucked string has frames no tone, chirp, noise, click or
chord has.

It is stored beside the weights it belongs to, as ``<weights stem>.familiar.safetensors``
(``tiny-clip.safetensors`` -> ``tiny-clip.familiar.safetensors``); a model without
one (every real checkpoint) gets no such notices. numpy only: no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUFFIX = ".familiar.safetensors"
# Share of held-out in-world inputs that may be flagged.
FLAGGED_IN_WORLD = 0.01
# Shrink the covariance toward its mean variance: in-world embeddings fill a small
# subspace, and an exact inverse would call every tiny step off it "unfamiliar".
SHRINK = 0.05


def path_for(weights: Path) -> Path:
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + SUFFIX)


@dataclass
class Familiarity:
    mean: np.ndarray  # [D]
    whiten: np.ndarray  # [D, D]: distance = |(x - mean) @ whiten|
    threshold: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, fit_on: np.ndarray, calibrate_on: np.ndarray, flagged: float = FLAGGED_IN_WORLD,
            **meta) -> "Familiarity":
        """Mean and covariance from ``fit_on``; the threshold from ``calibrate_on`` (other
        in-world inputs, so the threshold is not set on the very points it was fitted to)."""
        x = np.asarray(fit_on, np.float64)
        mean = x.mean(axis=0)
        cov = np.cov(x - mean, rowvar=False)
        cov = (1 - SHRINK) * cov + SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
        values, vectors = np.linalg.eigh(cov)
        whiten = vectors / np.sqrt(np.maximum(values, 1e-12))
        out = cls(mean.astype(np.float32), whiten.astype(np.float32), 0.0, meta)
        out.threshold = float(np.quantile(out.distance(calibrate_on), 1 - flagged))
        out.meta.update(flagged_in_world=flagged, fitted_on=len(x), calibrated_on=len(calibrate_on))
        return out

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding [N, D] from the in-world mean."""
        x = np.asarray(embeddings, np.float32) - self.mean
        return np.linalg.norm(x @ self.whiten, axis=1)

    def unfamiliar(self, embeddings: np.ndarray) -> list[bool]:
        return [bool(d > self.threshold) for d in self.distance(embeddings)]

    def save(self, path: Path) -> None:
        from safetensors.numpy import save

        from mmdemo.atomic import atomic_write_bytes

        data = save({"mean": self.mean, "whiten": self.whiten},
                    {"threshold": repr(self.threshold), "meta": json.dumps(self.meta)})
        atomic_write_bytes(Path(path), data)

    @classmethod
    def load(cls, path: Path) -> "Familiarity":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            return cls(f.get_tensor("mean"), f.get_tensor("whiten"), float(meta["threshold"]),
                       json.loads(meta.get("meta", "{}")))


# A clip's score is this quantile of its frames' distances to the bank.
FRAME_QUANTILE = 0.8
MAX_BANK = 24000  # frames kept (float16: 3 MB at 64 mel rows)
MAX_FRAMES = 1000  # a long clip is judged on this many of its frames, evenly spread


@dataclass
class FrameFamiliarity:
    bank: np.ndarray  # [N, F] in-world frames
    threshold: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, fit_on: list[np.ndarray], calibrate_on: list[np.ndarray], flagged: float = FLAGGED_IN_WORLD,
            seed: int = 0, **meta) -> "FrameFamiliarity":
        """The bank from the frames of the clips ``fit_on`` (each [T, F]); the threshold
        from the clips ``calibrate_on`` (others, so it is not set on the bank's own frames)."""
        frames = np.concatenate([f for f in fit_on if len(f)])
        rng = np.random.default_rng(seed)
        if len(frames) > MAX_BANK:
            frames = frames[rng.choice(len(frames), MAX_BANK, replace=False)]
        out = cls(frames.astype(np.float16), 0.0, meta)
        scores = out.scores(calibrate_on)
        out.threshold = float(np.quantile(scores, 1 - flagged))
        out.meta.update(flagged_in_world=flagged, fitted_on=len(fit_on), bank_frames=len(frames),
                        calibrated_on=len(calibrate_on), frame_quantile=FRAME_QUANTILE)
        return out

    def scores(self, clips: list[np.ndarray]) -> np.ndarray:
        """Per clip ([T, F] frames): the FRAME_QUANTILE of its frames' distances to their
        nearest bank frame (0 for a clip with no sound in it: silence is no evidence)."""
        bank = self.bank.astype(np.float32)
        bank_sq = (bank ** 2).sum(1)
        out = []
        for frames in clips:
            frames = np.asarray(frames, np.float32)
            if not len(frames):
                out.append(0.0)
                continue
            if len(frames) > MAX_FRAMES:
                frames = frames[np.linspace(0, len(frames) - 1, MAX_FRAMES).astype(int)]
            nearest = np.empty(len(frames), np.float32)
            for a in range(0, len(frames), 128):  # 128 x bank distances at a time (12 MB, not 100)
                f = frames[a:a + 128]
                d2 = (f ** 2).sum(1)[:, None] + bank_sq[None] - 2 * f @ bank.T
                nearest[a:a + 128] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
            out.append(float(np.quantile(nearest, FRAME_QUANTILE)))
        return np.asarray(out)

    def unfamiliar_clips(self, clips: list[np.ndarray]) -> list[bool]:
        return [bool(s > self.threshold) for s in self.scores(clips)]

    def save(self, path: Path) -> None:
        from safetensors.numpy import save

        from mmdemo.atomic import atomic_write_bytes

        data = save({"bank": self.bank}, {"threshold": repr(self.threshold), "kind": "frames",
                                          "meta": json.dumps(self.meta)})
        atomic_write_bytes(Path(path), data)


def load(path: Path) -> Familiarity | FrameFamiliarity:
    """Either kind, by the file's ``kind`` (files without one hold a :class:`Familiarity`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("kind") == "frames":
            return FrameFamiliarity(f.get_tensor("bank"), float(meta["threshold"]), json.loads(meta.get("meta", "{}")))
    return Familiarity.load(path)


def load_beside(weights: Path | None) -> Familiarity | FrameFamiliarity | None:
    """The familiarity stored beside ``weights``, or None when there is none or it is
    unreadable (a notice is a nicety: a broken file must not stop the model loading)."""
    if weights is None:
        return None
    path = path_for(Path(weights))
    if not path.is_file():
        return None
    try:
        return load(path)
    except Exception:  # noqa: BLE001 - any unreadable file means "no notices"
        import logging

        logging.getLogger(__name__).warning("Ignoring unreadable familiarity file %s", path)
        return None
