"""Train your own: heads trained on an upload or a generated task, side by side with
single-modality baselines, with a live chart, a leaderboard and a cancel button.

The training itself is a :class:`mmdemo.tasks.classify.TrainingJob`; the handler only
starts it, turns its progress rows into chart updates and cancels it.
"""

from __future__ import annotations

import time

import gradio as gr

from mmdemo.errors import MMDemoError
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmdemo.tasks import classify as tasks
from mmdemo.sessions import session_of
from mmdemo.ui.classify.context import ClassifyContext
from mmdemo.ui.classify.figures import confusion_figure, training_figure
from mmdemo.ui.common import user_errors, warn_all

# Training is long (seconds to minutes) and runs in its own group, one at a time, so it
# never holds the shared model group: classifying and the other tabs keep answering.
TRAINING_CONCURRENCY_ID = "classify-training"
CHART_EVERY_S = 0.5
DEFAULT_KINDS = ["concat", "bilinear", "gated"]
BOARD_COLUMNS = ["rank", "head", "inputs", "accuracy", "vs chance", "macro-F1", "per-class recall", "best epoch",
                 "seconds"]
CSV_HELP = (
    "**Your data**: a CSV with columns `image,text,label` (and optionally `audio`), one example per row, "
    "media paths relative to the CSV, uploaded together with the media files, or one zip holding the CSV and "
    f"its media. Up to {tasks.MAX_ROWS:,} rows and {tasks.MAX_CLASSES} labels; each label needs at least "
    "2 examples. 20% of each label is kept aside to validate."
)


def board_rows(report: tasks.TrainReport) -> list[list]:
    chance = report.chance
    return [[i + 1, r.name + (" (baseline)" if r.baseline else ""), " + ".join(r.modalities), round(r.accuracy, 4),
             f"at chance ({chance:.2f})" if r.at_chance(chance) else f"{r.accuracy - chance:+.2f}",
             round(r.macro_f1, 4), ", ".join(f"{k} {v:.2f}" for k, v in r.per_class_recall.items()),
             r.best_epoch, r.seconds] for i, r in enumerate(report.leaderboard)]


def _at_chance(report: tasks.TrainReport) -> str:
    """Which trained heads learned nothing, said in words (the leaderboard marks them too)."""
    idle = [r.name for r in report.leaderboard if not r.baseline and r.at_chance(report.chance)]
    if not idle:
        return ""
    return (f"\n\n**At chance** (within {tasks.AT_CHANCE_MARGIN:.2f} of {report.chance:.2f}): {', '.join(idle)}. "
            "Weighted sum and concat read one pooled vector per input, which cannot tell which attribute belongs "
            "to which object; attention, bilinear and gated read image patches and words. A token head at chance "
            "needs more rows or epochs.")


def report_summary(report: tasks.TrainReport, replaced: bool = False) -> str:
    fusion = [r for r in report.leaderboard if not r.baseline]
    base = [r for r in report.leaderboard if r.baseline]
    vs = ""
    if base:
        best_base = max(base, key=lambda r: r.accuracy)
        vs = (f" The best single modality ({best_base.name}) reached {best_base.accuracy:.3f}, so fusion "
              f"{'gains' if report.winner.accuracy > best_base.accuracy else 'does not gain'} "
              f"{report.winner.accuracy - best_base.accuracy:+.3f}.")
    cached = "features from the cache" if report.features_cached else f"features extracted in {report.feature_seconds:.1f} s"
    return (f"**{report.dataset}**: {report.n_examples:,} examples ({report.n_train:,} train / {report.n_val:,} "
            f"validation), {len(report.label_names)} labels, inputs {' + '.join(report.modalities)}; {cached}; "
            f"{len(fusion)} head(s) trained in {report.train_seconds:.1f} s.\n\n"
            f"Winner: **{report.winner.name}** with validation accuracy **{report.winner.accuracy:.3f}** "
            f"(macro-F1 {report.winner.macro_f1:.3f}; chance {report.chance:.3f}).{vs}{_at_chance(report)}\n\n"
            f"{'Replaced your head' if replaced else 'Saved as'} **{report.saved_as}** (now in your head list of "
            f"*Classify with a head*; only this session or login sees it).")


def render(ctx: ClassifyContext) -> dict:
    """The data and options, the live chart and the leaderboard; ``build`` adds the row
    below (confusion matrix beside the head files)."""
    with gr.Row():
        with gr.Column():
            gr.Markdown(CSV_HELP)
            files = gr.File(file_count="multiple", type="filepath", label="CSV + media files, or a zip",
                            file_types=[".csv", ".zip"] + sorted(IMAGE_SUFFIXES | AUDIO_SUFFIXES),
                            elem_id="train-files")
            button = gr.Button("Train on my data", variant="primary")
        with gr.Column():
            gr.Markdown("**Or a generated task**: the bundle's own tasks, where the answer needs "
                        "both inputs, so fusion should beat every single modality.")
            task = gr.Dropdown(list(tasks.GENERATED_TASKS), value="scene_qa", label="Generated task")
            n = gr.Slider(100, 10_000, value=2000, step=100, label="Examples")
            gen_button = gr.Button("Train on a generated task", variant="secondary")
    with gr.Row():
        kinds = gr.CheckboxGroup(list(tasks.HEAD_KINDS), value=DEFAULT_KINDS, label="Head types",
                                 elem_id="train-kinds")
        epochs = gr.Slider(1, 200, value=tasks.DEFAULT_EPOCHS, step=1, label="Epochs (max; early stopping)")
        patience = gr.Slider(1, tasks.MAX_PATIENCE, value=tasks.DEFAULT_PATIENCE, step=1,
                             label="Patience (epochs without a better validation loss before stopping)",
                             elem_id="train-patience")
        lr = gr.Number(1e-3, label="Learning rate", minimum=1e-6, maximum=1.0)
        name = gr.Textbox("my-head", label="Save the winner as", elem_id="train-name")
        baselines = gr.Checkbox(True, label="Single-modality baselines")
    cancel = gr.Button("Cancel training", variant="stop")
    status = gr.Markdown(elem_id="train-status")
    chart = gr.Plot(label="Training (live)", elem_id="train-chart")
    board = gr.Dataframe(headers=BOARD_COLUMNS, interactive=False, label="Leaderboard (validation split)",
                         elem_id="train-board")
    return {"files": files, "button": button, "task": task, "n": n, "gen_button": gen_button, "kinds": kinds,
            "epochs": epochs, "patience": patience, "lr": lr, "name": name, "baselines": baselines, "cancel": cancel,
            "status": status, "chart": chart, "board": board}


def _stream(ctx: ClassifyContext, job: tasks.TrainingJob, request, progress):
    """Progress, chart updates (every CHART_EVERY_S at most) and finally the leaderboard."""
    history: list[dict] = []
    skip = gr.skip()
    # The download is cleared, never skipped: Gradio 6.31 answers a skip (an update) by swapping
    # in a per-session copy of the File, and files served through that copy escape delete_cache.
    no_file = None
    with ctx.jobs.running(session_of(request), job):
        progress(0, desc="Reading the data")
        yield "Reading the data…", skip, skip, skip, no_file, skip
        last = 0.0
        for ev in job.events():
            if ev["stage"] in ("reading", "features"):
                what = "Reading rows" if ev["stage"] == "reading" else "Extracting features"
                progress((ev["done"], ev["total"]), desc=what)
                status = f"{what}: {ev['done']:,} / {ev['total']:,}"
            else:
                history.append(ev)
                progress(min(len(history) / job.planned_epochs, 0.99),
                         desc=f"{ev['kind']}: epoch {ev['epoch']}/{ev['epochs']}")
                status = (f"Training **{ev['kind']}**: epoch {ev['epoch']}/{ev['epochs']}, validation accuracy "
                          f"{ev['val_accuracy']:.3f}")
            now = time.monotonic()
            if now - last >= CHART_EVERY_S:
                last = now
                yield status, training_figure(history) if history else skip, skip, skip, no_file, skip
        try:
            report = job.result()
        except MMDemoError as exc:
            if exc.code != "training_cancelled":
                raise
            cancelled = exc
        else:
            cancelled = None
    if cancelled is not None:
        gr.Warning(str(cancelled))
        yield f"Cancelled. {cancelled}", training_figure(history) if history else skip, skip, skip, no_file, skip
        return
    warn_all(report.notices)
    yield (report_summary(report, job.replaced), training_figure(report.history), board_rows(report),
           confusion_figure(report), str(ctx.download_copy(report.saved_path)),
           gr.update(choices=ctx.fusion_names(request), value=report.saved_as))


def listen(ctx: ClassifyContext, ui: dict, *, download: gr.File, head: gr.Dropdown) -> None:
    def options(epochs, patience, lr, name, baselines, request) -> dict:
        return {"epochs": epochs, "patience": patience, "lr": lr, "save_as": name, "baselines": baselines,
                "cache_dir": ctx.cache_dir, "feature_cache": ctx.feature_cache, "heads": ctx.heads_of(request)}

    @user_errors
    def train_upload(files, kinds, epochs, lr, name, baselines, patience, request: gr.Request,
                     progress=gr.Progress()):
        """Train fusion heads on your own data: a CSV (image, text, label and optionally audio columns;
        media paths relative to the CSV) with its media files, or one zip of both.

        Args:
            files: the CSV and its media files, or one zip (http(s) URLs).
            kinds: head kinds to train: weighted_sum, concat, bilinear, attention, gated.
            epochs: most training epochs.
            lr: learning rate.
            name: the name for the trained heads.
            baselines: also train single-modality baselines, true or false.
            patience: stop after this many epochs without improvement on the validation split.

        Returns:
            Status (Markdown), training chart, leaderboard table, confusion matrix, the best head's file, head list.
        """
        job = tasks.TrainingJob.from_upload(ctx.registry, files, kinds,
                                            **options(epochs, patience, lr, name, baselines, request))
        yield from _stream(ctx, job, request, progress)

    @user_errors
    def train_generated(task, n, kinds, epochs, lr, name, baselines, patience, request: gr.Request,
                        progress=gr.Progress()):
        """Train fusion heads on generated examples (scenes with questions, or scenes with sounds).

        Args:
            task: scene_qa or scene_sound_match.
            n: how many generated examples.
            kinds: head kinds to train: weighted_sum, concat, bilinear, attention, gated.
            epochs: most training epochs.
            lr: learning rate.
            name: the name for the trained heads.
            baselines: also train single-modality baselines, true or false.
            patience: stop after this many epochs without improvement on the validation split.

        Returns:
            Status (Markdown), training chart, leaderboard table, confusion matrix, the best head's file, head list.
        """
        job = tasks.TrainingJob.from_generated(ctx.registry, task, n, kinds,
                                               **options(epochs, patience, lr, name, baselines, request))
        yield from _stream(ctx, job, request, progress)

    def cancel_training(request: gr.Request):
        """Cancel the training this client started (the current epoch finishes first; saved heads stay).

        Returns:
            A status message.
        """
        if not ctx.jobs.cancel(session_of(request)):
            return "Nothing is training right now."
        return "Cancelling… (the current epoch finishes first)"

    # Patience last: API clients written before it existed keep working (it has a default).
    settings = [ui["kinds"], ui["epochs"], ui["lr"], ui["name"], ui["baselines"], ui["patience"]]
    outputs = [ui["status"], ui["chart"], ui["board"], ui["confusion"], download, head]
    ui["button"].click(train_upload, [ui["files"], *settings], outputs, api_name="train_heads",
                       concurrency_id=TRAINING_CONCURRENCY_ID, concurrency_limit=1)
    ui["gen_button"].click(train_generated, [ui["task"], ui["n"], *settings], outputs, api_name="train_generated",
                           concurrency_id=TRAINING_CONCURRENCY_ID, concurrency_limit=1)
    ui["cancel"].click(cancel_training, None, ui["status"], api_name="cancel_training", concurrency_limit=None)
