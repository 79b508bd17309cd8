"""open_clip CLIP and CoCa models behind the registry.

One function, :func:`create_open_clip`, turns a catalog entry into a model, its
eval preprocessing and its tokenizer, whichever way the entry names its weights
(the order is decided by :func:`mmdemo.weights.resolve_weights`). The handles
satisfy ``mmdemo.handles.ClipHandle`` / ``CaptionerHandle``: numpy in, numpy out,
inputs moved to the handle's own device, so the task layer never touches torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError
from mmdemo.familiarity import load_beside
from mmdemo.models.conv_stem import CONFIG_KEY, apply_conv_stem, split_config
from mmdemo.scores import softmax
from mmdemo.weights import FILE, HUB, LOCAL_DIR, RANDOM, TAG, require_weights

# Every source open_clip can read; RANDOM only reaches here for entries with allow_random.
OPEN_CLIP_SOURCES = (HUB, LOCAL_DIR, FILE, TAG, RANDOM)

# open_clip keeps its model configs in a module-level dict and rescans it on
# add_model_config; neither that nor create_model is thread-safe.
_OPEN_CLIP_LOCK = threading.Lock()
_REGISTERED_CONFIGS: dict[str, Path] = {}


_STEMS: dict[str, list[int] | None] = {}  # model name -> its conv stem's channels (mmdemo/models/conv_stem.py)


class _WeightsComeNext(logging.Filter):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" whenever it
    builds without a checkpoint; for a conv-stem model the weights are loaded right after
    the stem is swapped in (and a trainer starts from random on purpose), so the warning
    would only alarm whoever reads the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _weights_come_next():
    quiet = _WeightsComeNext()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def _register_config(path: Path) -> str:
    """Register a custom architecture JSON with open_clip; returns its model name."""
    if not path.is_file():
        raise MMDemoError("model_config_not_found", f"Model config file not found: {path}")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MMDemoError("model_config_invalid", f"Model config {path} is not valid JSON: {exc}") from None
    name = path.stem
    if _REGISTERED_CONFIGS.get(name) != path:
        clean, stem = split_config(config if isinstance(config, dict) else {})
        if stem is None:
            open_clip.add_model_config(path)
        else:  # open_clip would refuse mmdemo's key: it reads a copy without it.
            # add_model_config reads the file as it registers it and keeps what it read (a
            # later rescan skips a file that is gone), so the copy goes at once: a running
            # app leaves nothing of it in the temp folder.
            with tempfile.TemporaryDirectory(prefix="mmdemo-open-clip-config-") as folder:
                copy = Path(folder) / f"{name}.json"
                copy.write_text(json.dumps(clean))
                open_clip.add_model_config(copy)
        _REGISTERED_CONFIGS[name] = path
        _STEMS[name] = stem
    return name


def create_open_clip(spec: EntrySpec, device: str):
    """(model, preprocess, tokenizer) for ``spec``; nothing is downloaded unless the
    entry names a pretrained tag or an ``hf-hub:`` repo (the user's explicit choice)."""
    # Where the weights come from is mmdemo.weights' decision; open_clip takes an
    # hf-hub:/local-dir: source as the model name and a file or tag as `pretrained`.
    source = require_weights(spec, OPEN_CLIP_SOURCES)
    pretrained = source.location if source.kind in (FILE, TAG) else None
    with _OPEN_CLIP_LOCK:
        arch = _register_config(spec.config) if spec.config is not None else spec.arch
        if not arch:
            raise MMDemoError("model_arch_missing",
                              f"Model {spec.name!r} names no architecture (arch = ... or config = ...).")
        stem = _STEMS.get(arch) if spec.config is not None else None
        if stem and source.kind not in (FILE, RANDOM):
            raise MMDemoError("conv_stem_source", f"Model {spec.name!r} has a conv stem ({CONFIG_KEY}), which only "
                                                  f"a weights file can fill; got {source.label}.")
        try:
            if stem:  # build, swap the stem in, then load the weights that include it
                with _weights_come_next():
                    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
                apply_conv_stem(model, stem)
                if source.kind == FILE:
                    open_clip.load_checkpoint(model, source.location, weights_only=True, device=device)
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained,
                                                                             device=device, weights_only=True)
        except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError/KeyError...
            raise MMDemoError(
                "model_load_failed",
                f"Could not load model {spec.name!r} from {source.label}: {type(exc).__name__}: {exc}",
            ) from exc
        if spec.tokenizer is not None:
            from mmdemo.models.tokenizer import WordTokenizer

            tokenizer = WordTokenizer.load(spec.tokenizer)
        else:
            tokenizer = open_clip.get_tokenizer(arch)
    model.eval()
    return model, preprocess, tokenizer


def create_untrained(config: Path):
    """A randomly initialised model of a custom architecture JSON (mmdemo's extension
    applied), in train mode: what the tiny bundle's trainers start from."""
    with _OPEN_CLIP_LOCK:
        arch = _register_config(Path(config))
        with _weights_come_next():
            model = open_clip.create_model(arch)
        if _STEMS.get(arch):
            apply_conv_stem(model, _STEMS[arch])
    return model.train()


def _context_length(model, tokenizer) -> int:
    n = getattr(tokenizer, "context_length", None) or getattr(model, "context_length", None)
    return int(n or 77)


class OpenClipHandle:
    """A loaded open_clip CLIP model: batched, normalised image and text embeddings
    (a :class:`mmdemo.handles.ClipHandle`)."""

    def __init__(self, spec: EntrySpec, model, preprocess, tokenizer, device: str):
        self.spec, self.model, self.preprocess, self.tokenizer = spec, model, preprocess, tokenizer
        self.device = device
        self.context_length = _context_length(model, tokenizer)
        self.embed_dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") and model.text_projection is not None else None
        # Identifies the embedding space: indexes, feature caches and trained heads
        # are only valid for the exact encoder they were computed with.
        self.model_id = spec.model_id
        # Where its in-world inputs lie (mmdemo/familiarity.py); None for real checkpoints.
        self.familiarity = load_beside(spec.weights)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @staticmethod
    def _familiar(image_tokens: np.ndarray) -> np.ndarray:
        """What familiarity is measured on: the mean of the image tower's last-layer patch
        tokens. Measured on the tiny bundle, it tells photos from scenes far better than
        the pooled embedding (photos flagged: CoCa 0.80 vs 0.11, CLIP 0.68 vs 0.63, at
        1-2% of in-world scenes), which a pooler trained to name shapes squeezes into
        the world."""
        return np.asarray(image_tokens).mean(axis=1)

    def familiar_features(self, images: Sequence) -> np.ndarray:
        return self._familiar(self.encode_image_tokens(images)[1])

    def unfamiliar_tokens(self, image_tokens: np.ndarray) -> list[bool] | None:
        """:meth:`unfamiliar_images` for tokens already at hand (``encode_image_tokens``)."""
        return None if self.familiarity is None else self.familiarity.unfamiliar(self._familiar(image_tokens))

    def unfamiliar_images(self, images: Sequence) -> list[bool] | None:
        """Which images lie outside the world the model was trained on (None: the model
        does not know its world's bounds, as no real checkpoint does)."""
        if self.familiarity is None:
            return None
        return self.unfamiliar_tokens(self.encode_image_tokens(images)[1])

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    # -- images --------------------------------------------------------------------
    def _pixels(self, images: Sequence) -> torch.Tensor:
        return torch.stack([self.preprocess(im) for im in images]).to(self.device)

    def encode_images(self, images: Sequence, batch_size: int = 64, progress=None) -> np.ndarray:
        """L2-normalised embeddings [N, D] of PIL images, in batches."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                feats = self.model.encode_image(self._pixels(images[start:start + batch_size]), normalize=True)
                out.append(feats.float().cpu().numpy())
                if progress is not None:
                    progress(min(start + batch_size, len(images)), len(images))
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim or 0), np.float32)

    def encode_image_tokens(self, images: Sequence, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(normalised pooled embeddings [N, D], last-layer patch tokens [N, L, W]) in one pass.

        Fusion heads with cross-modal attention attend over the tokens."""
        pooled, tokens = [], []
        visual = self.model.visual
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                out = visual.forward_intermediates(
                    self._pixels(images[start:start + batch_size]), indices=1,
                    normalize_intermediates=True, output_fmt="NLC")
                pooled.append(F.normalize(out["image_features"], dim=-1).float().cpu().numpy())
                tokens.append(out["image_intermediates"][-1].float().cpu().numpy())
        return np.concatenate(pooled), np.concatenate(tokens)

    def model_view(self, image):
        """``image`` (PIL) as the model sees it: resized and cropped by its own
        preprocessing, before the tensor conversion (maps are drawn over this)."""
        from torchvision import transforms as T

        for step in getattr(self.preprocess, "transforms", ()):
            if isinstance(step, (T.ToTensor, T.Normalize)):
                break
            image = step(image)
        return image.convert("RGB")

    def saliency(self, images: Sequence, texts: Sequence[str], method: str = "chefer",
                 contrast: Sequence[str] = ()) -> tuple[np.ndarray, dict]:
        """(maps [N, gh, gw] of where image i matched text i, the token grid's geometry);
        ``contrast``: other texts the ``chefer`` method explains against
        (mmdemo/models/saliency.py)."""
        from mmdemo.models.saliency import saliency_maps, token_geometry

        with torch.no_grad():  # not inference mode: the gradient method reuses these
            texts_t = self.model.encode_text(self.tokenize(texts).to(self.device), normalize=True)
            others = (self.model.encode_text(self.tokenize(contrast).to(self.device), normalize=True)
                      if len(contrast) else None)
        maps = saliency_maps(self.model, self._pixels(images), texts_t, method, others)
        return maps, token_geometry(self.model)

    # -- texts ---------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), context_length=self.context_length)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts are longer than the model's context and get cut."""
        if hasattr(self.tokenizer, "truncated"):
            return self.tokenizer.truncated(list(texts))
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return [False] * len(texts)
        return [len(encode(t)) + 2 > self.context_length for t in texts]

    def unknown_words(self, texts: Sequence[str]) -> list[str]:
        """Words a closed-vocabulary tokenizer (the tiny bundle's) reads as unknown; a BPE
        tokenizer spells every word, so it has none."""
        find = getattr(self.tokenizer, "unknown_words", None)
        return find(list(texts)) if find is not None else []

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised embeddings [N, D] of texts, in batches."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenize(texts[start:start + batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim or 0), np.float32)

    def encode_text_tokens(self, texts: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalised pooled embeddings [N, D], last-layer token features [N, L, W],
        mask [N, L] of real tokens) for fusion heads that attend over words."""
        pooled, tokens, masks = [], [], []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids = self.tokenize(texts[start:start + batch_size]).to(self.device)
                out = self.model.forward_intermediates(text=ids, text_indices=1, normalize_intermediates=True)
                pooled.append(out["text_features"].float().cpu().numpy())
                tokens.append(out["text_intermediates"][-1].float().cpu().numpy())
                masks.append((ids != 0).cpu().numpy())
        return np.concatenate(pooled), np.concatenate(tokens), np.concatenate(masks)

    def zero_shot(self, image_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        """CLIP's zero-shot probabilities: softmax over texts of scaled cosine similarity."""
        return softmax(self.logit_scale * np.asarray(image_embs) @ np.asarray(text_embs).T)


class OpenClipCaptioner(OpenClipHandle):
    """An open_clip CoCa model: everything a ClipHandle does, plus caption generation
    (a :class:`mmdemo.handles.CaptionerHandle`)."""

    def generate(self, images: Sequence, options=None) -> list[list[str]]:
        from mmdemo.models.decoding import DecodeOptions, generate_captions

        options = options or DecodeOptions()
        options.validate()
        with torch.inference_mode():
            return generate_captions(self.model, self._pixels(images), self.tokenizer, options)

    def reached_limit(self, captions: Sequence[str], options) -> list[bool]:
        """Which captions are as long as decoding allows (``options.max_length``, or the
        model's text context): they may have been cut before the model ended them."""
        from mmdemo.models.decoding import model_context_length

        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return [False] * len(captions)
        limit = min(int(options.max_length), model_context_length(self.model))
        return [len(encode(c)) >= limit for c in captions]


def load_clip(spec: EntrySpec, device: str, deps: dict | None = None) -> OpenClipHandle:
    model, preprocess, tokenizer = create_open_clip(spec, device)
    cls = OpenClipCaptioner if hasattr(model, "text_decoder") else OpenClipHandle
    return cls(spec, model, preprocess, tokenizer, device)


def load_captioner(spec: EntrySpec, device: str, deps: dict | None = None) -> OpenClipCaptioner:
    model, preprocess, tokenizer = create_open_clip(spec, device)
    if not hasattr(model, "text_decoder"):
        raise MMDemoError("not_a_captioner", f"Model {spec.name!r} ({spec.arch}) is not a CoCa captioner; "
                                             "pick a coca_* architecture.")
    return OpenClipCaptioner(spec, model, preprocess, tokenizer, device)
