"""Train fusion heads on cached frozen features: cross-entropy, AdamW, a stratified
train/validation split, early stopping on validation loss; seeded and cancellable."""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.errors import MMDemoError
from mmdemo.features import FeatureSet
from mmdemo.head_kinds import TOKEN_KINDS
from mmdemo.scores import softmax


class TrainingCancelled(MMDemoError):
    """Raised (code ``training_cancelled``) where a cancel flag was seen; nothing was saved."""


@dataclass
class TrainResult:
    kind: str
    head: torch.nn.Module
    metrics: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int,
                     label_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    name = (lambda c: label_names[c]) if label_names else (lambda c: c)
    if len(classes) < 2:
        only = name(classes[0]) if len(classes) else "none"
        raise MMDemoError("too_few_classes", f"Training needs at least 2 classes; the data has only {only!r}.")
    single = [name(c) for c, n in zip(classes, counts) if n < 2]
    if single:
        raise MMDemoError("class_too_small", f"Each class needs at least 2 examples (one to train, one to validate); "
                          f"these have one: {', '.join(map(str, single[:10]))}.")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(len(idx) - 1, max(1, int(round(len(idx) * val_fraction))))
        val += list(idx[:k])
        train += list(idx[k:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def predict_proba(head, features: FeatureSet, batch_size: int = 1024) -> np.ndarray:
    head.eval()
    with torch.no_grad():
        return softmax(_logits(head, features, batch_size).float().numpy())


def metrics_from(pred: np.ndarray, true: np.ndarray, label_names: list[str]) -> dict:
    c = len(label_names)
    conf = np.zeros((c, c), int)
    np.add.at(conf, (true, pred), 1)
    tp = np.diag(conf).astype(float)
    recall = tp / np.maximum(conf.sum(1), 1)
    precision = tp / np.maximum(conf.sum(0), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    present = conf.sum(1) > 0
    return {"accuracy": float(tp.sum() / max(1, len(true))), "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "per_class_recall": {label_names[i]: float(recall[i]) for i in range(c)},
            "confusion": conf.tolist(), "n": int(len(true))}


def evaluate_head(head, features: FeatureSet) -> dict:
    pred = predict_proba(head, features).argmax(1)
    return metrics_from(pred, features.labels.numpy(), features.label_names)


def small_data_batch(n_train: int, batch_size: int) -> int:
    """At most ``batch_size``, and small enough for MIN_STEPS_PER_EPOCH steps an epoch:
    on 160 training rows, batches of 64 make 3 optimizer steps an epoch, too few for a
    head to move before early stopping gives up on it."""
    return max(MIN_BATCH, min(int(batch_size), n_train // MIN_STEPS_PER_EPOCH))


MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 16


# Width of a head's hidden layers: token heads run attention or an MLP per token, so they
# are narrower (measured on the tiny bundle: 128 reaches the same accuracy as 256, in half the time).
POOLED_HIDDEN, TOKEN_HIDDEN = 256, 128
WARMUP_FRACTION = 0.05  # of all steps: the LR ramps up, then follows a cosine down


def default_hidden(kind: str, features: FeatureSet) -> int:
    return TOKEN_HIDDEN if kind in TOKEN_KINDS and features.tokens else POOLED_HIDDEN


PRIOR_LR_FACTOR = 10.0  # see _param_groups


def _param_groups(head, lr: float, weight_decay: float) -> list[dict]:
    """A token head's cosine-to-logit prior (a handful of weights) learns at ten times the
    rate and without decay: on 200 rows it must settle before the token paths memorise the
    training rows and early stopping ends the run (measured: attention on scene_sound_match
    stopped at epoch 2 at chance with one rate for all)."""
    prior = getattr(head, "prior", None)
    if prior is None:
        return [{"params": list(head.parameters())}]
    mine = {id(p) for p in prior.parameters()}
    return [{"params": list(prior.parameters()), "lr": lr * PRIOR_LR_FACTOR, "weight_decay": 0.0},
            {"params": [p for p in head.parameters() if id(p) not in mine]}]


def _schedule(opt, total_steps: int):
    """Warm-up then cosine decay: attention heads sit on a plateau for a few epochs before they
    bind words to patches, and a constant LR either never leaves it or never settles."""
    warm = max(1, int(total_steps * WARMUP_FRACTION))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_heads(features: FeatureSet, kinds: list[str], *, epochs: int = 30, lr: float = 1e-3,
                weight_decay: float = 1e-2, batch_size: int = 64, val_fraction: float = 0.2, patience: int = 5,
                seed: int = 0, hidden: int | None = None, progress: Callable[[dict], None] | None = None,
                cancel: threading.Event | None = None, split=None) -> list[TrainResult]:
    """Each kind trained on one split; the state with the best validation loss is kept.
    ``hidden``: None picks each kind's default width (:func:`default_hidden`)."""
    from mmdemo.models.fusion import create_head

    train_idx, val_idx = split if split is not None else stratified_split(
        features.labels.numpy(), val_fraction, seed, features.label_names)
    tr, va = features.subset(train_idx), features.subset(val_idx)
    batch_size = small_data_batch(len(tr), batch_size)
    token_dims = {m: int(t.shape[-1]) for m, t in features.tokens.items()}
    results = []
    for kind in kinds:
        started = time.perf_counter()
        torch.manual_seed(seed)
        # Each modality's own width and space: raw products only where vectors share one.
        head = create_head(kind, modalities=tuple(features.pooled), dims=features.dims,
                           spaces=dict(features.spaces) or None, num_classes=len(features.label_names),
                           hidden=hidden or default_hidden(kind, features), token_dims=token_dims)
        opt = torch.optim.AdamW(_param_groups(head, lr, weight_decay), lr=lr, weight_decay=weight_decay)
        sched = _schedule(opt, epochs * -(-len(tr) // batch_size))
        gen = torch.Generator().manual_seed(seed)
        best, best_state, best_epoch, bad, history = float("inf"), None, 0, 0, []
        for epoch in range(1, epochs + 1):
            head.train()
            order = torch.randperm(len(tr), generator=gen)
            total = 0.0
            for s in range(0, len(tr), batch_size):
                if cancel is not None and cancel.is_set():
                    raise TrainingCancelled("training_cancelled",
                                            "Training was cancelled; previously saved heads are unchanged.")
                if len(tr) - s == 1 and s > 0:
                    break  # a last batch of one row: batch norm (token heads' prior) can't train on it
                b = tr.subset(order[s:s + batch_size].numpy())
                loss = F.cross_entropy(head(b.pooled, b.tokens or None), b.labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(b)
            head.eval()
            with torch.no_grad():
                logits = _logits(head, va)
                val_loss = float(F.cross_entropy(logits, va.labels))
                val_acc = float((logits.argmax(1) == va.labels).float().mean())
            row = {"kind": kind, "epoch": epoch, "epochs": epochs, "train_loss": total / max(1, len(tr)),
                   "val_loss": val_loss, "val_accuracy": val_acc}
            history.append(row)
            if progress is not None:
                progress(row)
            if val_loss < best - 1e-4:
                best, best_state, best_epoch, bad = val_loss, copy.deepcopy(head.state_dict()), epoch, 0
            else:
                bad += 1
                if bad >= patience:
                    break
        head.load_state_dict(best_state)
        head.eval()
        results.append(TrainResult(kind, head, evaluate_head(head, va), history,
                                   round(time.perf_counter() - started, 2), best_epoch))
    return results


def _logits(head, features: FeatureSet, batch_size: int = 1024) -> torch.Tensor:
    """Logits over a whole set, in batches (token heads on thousands of rows at once would
    hold every attention map in memory)."""
    out = []
    for s in range(0, len(features), batch_size):
        part = features.subset(np.arange(s, min(s + batch_size, len(features))))
        out.append(head(part.pooled, part.tokens or None))
    return torch.cat(out)
