"""Training heads on a dataset: side by side with single-modality baselines, on one
shared stratified split, and a :class:`TrainingJob` that runs that in the background
for the UI (which only starts it, streams its progress and cancels it).

The trainers (torch) are imported when a run starts, not with this module, so that
building the app imports no torch.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mmdemo.errors import MMDemoError
from mmdemo.head_kinds import HEAD_KINDS
from mmdemo.tasks.classify.datasets import Dataset, generated_dataset, load_dataset_upload, rate_of
from mmdemo.tasks.classify.features import FeatureCache, dataset_features
from mmdemo.tasks.classify.heads import OwnerHeads, check_save_name, head_name, save_trained_head
from mmdemo.tasks.classify.reports import LeaderRow, TrainReport

# Early stopping ends most runs sooner; slow learners (gated heads) still improve after 30.
DEFAULT_EPOCHS = 60
# Epochs without a better validation loss before training stops (early stopping).
DEFAULT_PATIENCE = 8
MAX_PATIENCE = 100
CANCELLED = "Training was cancelled; previously saved heads are unchanged."


def check_training_options(kinds, epochs, lr, patience=DEFAULT_PATIENCE) -> list[str]:
    """The head kinds to train (deduplicated), or an error naming the bad option."""
    kinds = list(dict.fromkeys(kinds or []))
    if not kinds:
        raise MMDemoError("head_kinds_missing", f"Pick at least one head type ({', '.join(HEAD_KINDS)}).")
    unknown = [k for k in kinds if k not in HEAD_KINDS]
    if unknown:
        raise MMDemoError("head_kind_unknown", f"Unknown head type(s) {', '.join(map(str, unknown))}. "
                                               f"Available: {', '.join(HEAD_KINDS)}.")
    if epochs is None or not 1 <= int(epochs) <= 500:
        raise MMDemoError("epochs_out_of_range", f"Epochs must be between 1 and 500 (got {epochs}).")
    if lr is None or not 1e-6 <= float(lr) <= 1.0:
        raise MMDemoError("learning_rate_out_of_range", f"The learning rate must be between 1e-6 and 1 (got {lr}).")
    if patience is None or not 1 <= int(patience) <= MAX_PATIENCE:
        raise MMDemoError("patience_out_of_range", f"Patience must be between 1 and {MAX_PATIENCE} epochs "
                                                   f"(got {patience}).")
    return kinds


def train_on_dataset(ds: Dataset, kinds: Sequence[str], clip, audio=None, *, epochs: int = DEFAULT_EPOCHS,
                     lr: float = 1e-3, baselines: bool = True, seed: int = 0, patience: int = DEFAULT_PATIENCE,
                     cache: FeatureCache | None = None, progress: Callable[[dict], None] | None = None,
                     cancel: threading.Event | None = None, token_tower=None) -> TrainReport:
    """Train each head kind (and single-modality baselines) on one shared stratified split.

    ``progress`` gets dicts: {"stage": "features", "done", "total"} while encoding, then
    the trainer's per-epoch rows ({"stage": "train", "kind", "epoch", ...})."""
    from mmdemo.training.fusion_trainer import stratified_split, train_heads

    kinds = check_training_options(kinds, epochs, lr, patience)
    patience = int(patience)
    emit = progress or (lambda _row: None)
    t0 = time.perf_counter()
    fs, cached = dataset_features(ds, clip, audio, cache=cache, cancel=cancel, token_tower=token_tower,
                                  progress=lambda d, t: emit({"stage": "features", "done": d, "total": t}))
    feature_seconds = round(time.perf_counter() - t0, 2)
    split = stratified_split(fs.label_indices(), 0.2, seed, fs.label_names)
    history: list[dict] = []

    def on_epoch(name):
        def f(row):
            row = {**row, "stage": "train", "kind": name}
            history.append(row)
            emit(row)
        return f

    t1 = time.perf_counter()
    rows: list[LeaderRow] = []
    heads = {}
    for kind in kinds:
        (res,) = train_heads(fs, [kind], epochs=int(epochs), lr=float(lr), patience=patience, seed=seed,
                             split=split, progress=on_epoch(kind), cancel=cancel)
        heads[kind] = res.head
        rows.append(LeaderRow(kind, kind, fs.modalities, res.metrics["accuracy"], res.metrics["macro_f1"],
                              res.metrics["per_class_recall"], res.metrics["confusion"], res.best_epoch, res.seconds))
    baseline_heads = {}
    if baselines:
        for m in fs.modalities:
            name = f"{m} only"
            (res,) = train_heads(fs.only(m), ["concat"], epochs=int(epochs), lr=float(lr), patience=patience,
                                 seed=seed, split=split, progress=on_epoch(name), cancel=cancel)
            rows.append(LeaderRow(name, "concat", (m,), res.metrics["accuracy"], res.metrics["macro_f1"],
                                  res.metrics["per_class_recall"], res.metrics["confusion"], res.best_epoch,
                                  res.seconds, baseline=True))
            baseline_heads[name] = res.head
    rows.sort(key=lambda r: (-r.accuracy, -r.macro_f1, r.baseline))
    winner = next(r for r in rows if not r.baseline)
    return TrainReport(ds.name, len(ds), len(split[0]), len(split[1]), list(fs.label_names), fs.modalities, rows,
                       winner, heads[winner.kind], history, cached, feature_seconds,
                       round(time.perf_counter() - t1, 2), list(ds.notices), heads, baseline_heads)


class TrainingJob:
    """One training run in a worker thread: read the data, extract features, train
    every kind, save the winner as ``save_as``. Progress comes out of :meth:`events`
    as the dicts :func:`train_on_dataset` emits, plus {"stage": "reading", "done",
    "total"} while rows are read; :meth:`cancel` stops it at the next batch (or row
    check), before anything is saved. Its temp folder (an unpacked upload) is removed
    when the worker ends, whatever the outcome. With ``heads`` (one owner's namespace of
    a :class:`HeadStore`) the winner is saved there, and :attr:`replaced` says whether
    it replaced that owner's head of the same name; without, in the shared registry."""

    def __init__(self, registry, make_dataset: Callable[[Path, object, Callable[[int, int], None]], Dataset],
                 kinds: Sequence[str], *, epochs: int, lr: float, baselines: bool, save_as: str | None,
                 cache_dir: str | Path, feature_cache: FeatureCache | None = None,
                 heads: OwnerHeads | None = None, patience: int = DEFAULT_PATIENCE):
        self.kinds = check_training_options(kinds, epochs, lr, patience)
        self.patience = int(patience)
        if heads is not None:
            self.save_as = heads.check_name(save_as, "my-head")
        else:
            self.save_as = head_name(save_as, "my-head")
            check_save_name(registry, self.save_as)
        self.heads, self.replaced = heads, False
        self.registry, self.make_dataset = registry, make_dataset
        self.epochs, self.lr, self.baselines = int(epochs), float(lr), bool(baselines)
        self.cache_dir, self.feature_cache = Path(cache_dir), feature_cache
        # Epoch rows to expect at most (early stopping makes it fewer): 3 baselines at most.
        self.planned_epochs = max(1, self.epochs * (len(self.kinds) + (3 if self.baselines else 0)))
        self.report: TrainReport | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=f"mmdemo-train-{self.save_as}", daemon=True)

    @classmethod
    def from_upload(cls, registry, files, kinds, **options) -> "TrainingJob":
        if not files:
            raise MMDemoError("dataset_upload_missing", "Upload a CSV with its media files, or a zip (see the "
                                                        "format above).")

        def make(work, audio, on_rows):
            return load_dataset_upload(files, work, audio_rate=rate_of(audio), progress=on_rows)
        return cls(registry, make, kinds, **options)

    @classmethod
    def from_generated(cls, registry, task: str, n: int, kinds, **options) -> "TrainingJob":
        return cls(registry, lambda work, audio, on_rows: generated_dataset(task, int(n)), kinds, **options)

    def start(self) -> None:
        self._worker.start()

    def cancel(self) -> None:
        self._cancel.set()

    def events(self, poll_s: float = 0.25) -> Iterator[dict]:
        """Progress rows until the worker ends."""
        while True:
            try:
                ev = self._events.get(timeout=poll_s)
            except queue.Empty:
                # Not started, or its end was already read: nothing more will come.
                if not self._worker.is_alive() and self._events.empty():
                    return
                continue
            if ev is None:
                return
            yield ev

    def result(self) -> TrainReport:
        """The report once the worker ended; its error (TrainingCancelled, code
        ``training_cancelled``, when cancelled) is raised here instead."""
        self._worker.join()
        if self.error is not None:
            raise self.error
        return self.report

    def _run(self) -> None:
        from mmdemo.training.fusion_trainer import TrainingCancelled

        work = Path(tempfile.mkdtemp(prefix="mmdemo-train-"))
        try:
            # Lazy: a dataset without audio never loads the audio model (a download, on a real profile).
            clip = self.registry.for_slot("clip", lazy=True)
            audio = self.registry.for_slot("audio", lazy=True) if self.registry.profile.audio else None
            tower = self.registry.for_slot("tokens", lazy=True)

            def on_rows(done, total):
                if self._cancel.is_set():  # reading 20,000 rows takes a while: stop there too
                    raise TrainingCancelled("training_cancelled", CANCELLED)
                self._events.put({"stage": "reading", "done": done, "total": total})

            ds = self.make_dataset(work, audio, on_rows)
            report = train_on_dataset(ds, self.kinds, clip, audio, epochs=self.epochs, lr=self.lr,
                                      patience=self.patience, baselines=self.baselines, cache=self.feature_cache,
                                      progress=self._events.put, cancel=self._cancel, token_tower=tower)
            if self._cancel.is_set():
                raise TrainingCancelled("training_cancelled", CANCELLED)
            if self.heads is not None:
                self.replaced = self.heads.save_trained(report, self.save_as, clip, audio, tower)
            else:
                save_trained_head(report, self.registry, self.cache_dir, self.save_as, clip, audio, tower)
            self.report = report
        except BaseException as exc:  # handed to whoever asks for the result
            self.error = exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
            self._events.put(None)


class TrainingJobs:
    """The running job of each session (a browser page): one at a time per page."""

    def __init__(self):
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self, session: str, job: TrainingJob) -> Iterator[TrainingJob]:
        """Start ``job`` for ``session``; leaving the block (the job ended, or the page
        went away and its generator was closed) cancels it and frees the session."""
        with self._lock:
            if session in self._jobs:
                raise MMDemoError("training_running", "A training from this page is already running; wait for it "
                                                      "or cancel it.")
            self._jobs[session] = job
        try:
            job.start()
            yield job
        finally:
            job.cancel()
            with self._lock:
                self._jobs.pop(session, None)

    def cancel(self, session: str) -> bool:
        """Cancel ``session``'s job; False when it has none."""
        with self._lock:
            job = self._jobs.get(session)
        if job is None:
            return False
        job.cancel()
        return True
