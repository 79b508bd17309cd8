"""The Classify tab: image + text (+ audio) through a trained fusion head or zero-shot,
and training heads on your own data with a live chart, a leaderboard and a cancel button.

Handlers call mmdemo.tasks.classify and only format its results. Training runs in a
worker thread that reports per-epoch rows through a queue; the (generator) handler turns
them into progress, chart updates and finally the leaderboard, so the page stays live.
"""

from __future__ import annotations

import functools
import logging
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from mmdemo.errors import MMDemoError
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmdemo.tasks import classify as tasks
from mmdemo.ui.common import MODEL_CONCURRENCY_ID, user_errors, warn_all

log = logging.getLogger(__name__)

# Training is long (seconds to minutes) and runs in its own group, one at a time, so it
# never holds the shared model group: classifying and the other tabs keep answering.
TRAINING_CONCURRENCY_ID = "classify-training"
CHART_EVERY_S = 0.5
DEFAULT_KINDS = ["concat", "bilinear", "gated"]
PREFERRED_KINDS = ("bilinear", "gated", "attention", "concat", "weighted_sum")
BOARD_COLUMNS = ["rank", "head", "inputs", "accuracy", "macro-F1", "per-class recall", "best epoch", "seconds"]
CSV_HELP = (
    "**Your data**: a CSV with columns `image,text,label` (and optionally `audio`), one example per row, "
    "media paths relative to the CSV, uploaded together with the media files, or one zip holding the CSV and "
    f"its media. Up to {tasks.MAX_ROWS:,} rows and {tasks.MAX_CLASSES} labels; each label needs at least "
    "2 examples. 20% of each label is kept aside to validate."
)


def _stream_errors(gen_fn):
    """user_errors for generator handlers (gradio needs a generator function to stream)."""

    @functools.wraps(gen_fn)
    def wrapper(*args, **kwargs):
        try:
            yield from gen_fn(*args, **kwargs)
        except MMDemoError as exc:
            raise gr.Error(str(exc)) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug: log it fully, show the user something readable
            log.exception("handler %s failed", gen_fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). The server is still running.") from None

    return wrapper


# --------------------------------------------------------------------------- figures


def ablation_figure(res: tasks.Classification):
    """Probability of each label with all inputs and with each modality removed."""
    import plotly.graph_objects as go

    labels = [r["label"] for r in res.labels[:10]]
    full = {r["label"]: r["score"] for r in res.labels}
    fig = go.Figure(go.Bar(name="all inputs", x=labels, y=[full[lab] for lab in labels]))
    for a in res.ablation:
        p = {x["label"]: x["score"] for x in a["labels"]}
        fig.add_trace(go.Bar(name=f"without {a['modality']}", x=labels, y=[p[lab] for lab in labels]))
    fig.update_layout(barmode="group", title="Modality contribution: prediction with each input removed (zeroed)",
                      yaxis=dict(title="probability", range=[0, 1]), height=360,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.2))
    return fig


def explanation_figure(res: tasks.Classification):
    """The head's own view of the inputs: learned weights, gates or attention."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    e = res.explanation
    titles = {"modality_weights": "Learned modality weights (softmax)",
              "gates": "Gate values per modality for this input (sigmoid)",
              "attention": "Text query's attention mass per modality"}
    if e["type"] == "none":
        fig = go.Figure()
        fig.add_annotation(text=f"A {res.kind} head mixes the inputs in one network:<br>it has no per-modality "
                                "weights to show.<br>The modality contribution chart shows what each input adds.",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
        fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False, plot_bgcolor="white",
                          margin=dict(l=20, r=20, t=20, b=20))
        return fig
    grid = e.get("image_grid")
    fig = make_subplots(rows=1, cols=2 if grid else 1, column_widths=[0.5, 0.5] if grid else None,
                        subplot_titles=(titles[e["type"]], "Attention over image patches") if grid else None)
    fig.add_trace(go.Bar(x=e["names"], y=e["values"], marker_color="#2a9d8f", showlegend=False,
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), row=1, col=1)
    if grid:
        fig.add_trace(go.Heatmap(z=grid, colorscale="Viridis", showscale=False,
                                 hovertemplate="patch row %{y}, col %{x}: %{z:.3f}<extra></extra>"), row=1, col=2)
        fig.update_yaxes(autorange="reversed", row=1, col=2)
    else:
        fig.update_layout(title=titles[e["type"]])
    fig.update_layout(height=340, margin=dict(l=50, r=20, t=60, b=40))
    return fig


def zero_shot_figure(z: tasks.ZeroShotResult):
    import plotly.graph_objects as go

    labels = [r["label"] for r in z.labels[:10]]
    fused = {r["label"]: r["score"] for r in z.labels}
    fig = go.Figure(go.Bar(name="fused", x=labels, y=[fused[lab] for lab in labels]))
    for m, rows in z.per_modality.items():
        p = {r["label"]: r["score"] for r in rows}
        fig.add_trace(go.Bar(name=f"{m} alone (weight {z.weights[m]:.2f})", x=labels, y=[p[lab] for lab in labels]))
    fig.update_layout(barmode="group", title="Fused scores next to each modality alone",
                      yaxis=dict(title="probability", range=[0, 1]), height=360,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.2))
    return fig


def training_figure(history: list[dict]):
    """Validation accuracy and training loss per epoch, one line per head."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Validation accuracy", "Training loss"))
    names = list(dict.fromkeys(r["kind"] for r in history))
    for i, name in enumerate(names):
        rows = [r for r in history if r["kind"] == name]
        color = f"hsl({(i * 67) % 360},65%,45%)"
        x = [r["epoch"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["val_accuracy"] for r in rows], name=name, mode="lines+markers",
                                 line=dict(color=color), legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["train_loss"] for r in rows], name=name, mode="lines",
                                 line=dict(color=color), legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(height=340, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def confusion_figure(report: tasks.TrainReport):
    import plotly.graph_objects as go

    names = report.label_names
    fig = go.Figure(go.Heatmap(z=report.winner.confusion, x=names, y=names, colorscale="Blues",
                               text=report.winner.confusion, texttemplate="%{text}" if len(names) <= 20 else None,
                               hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=f"Confusion matrix of the winner ({report.winner.name}) on {report.n_val} validation "
                            "examples", xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=400, margin=dict(l=80, r=20, t=50, b=60))
    return fig


def board_rows(report: tasks.TrainReport) -> list[list]:
    return [[i + 1, r.name + (" (baseline)" if r.baseline else ""), " + ".join(r.modalities), round(r.accuracy, 4),
             round(r.macro_f1, 4), ", ".join(f"{k} {v:.2f}" for k, v in r.per_class_recall.items()),
             r.best_epoch, r.seconds] for i, r in enumerate(report.leaderboard)]


def report_summary(report: tasks.TrainReport) -> str:
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
            f"(macro-F1 {report.winner.macro_f1:.3f}).{vs}\n\n"
            f"Saved as **{report.saved_as}** (now in the head list of *Classify with a head*).")


# --------------------------------------------------------------------------- the tab


def _writable_dir(preferred: Path, prefix: str) -> Path:
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = preferred / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return preferred
    except OSError:  # a read-only cache (e.g. a locked-down Space): examples go to a temp folder
        return Path(tempfile.mkdtemp(prefix=prefix))


def _default_head(names: list[str], task: str) -> str | None:
    for kind in PREFERRED_KINDS:
        if f"tiny-head-{task}-{kind}" in names:
            return f"tiny-head-{task}-{kind}"
    return next((n for n in names if task in n), names[0] if names else None)


def build(registry, settings) -> None:
    """Lay out the Classify tab inside the current gr.Blocks context."""
    cache_dir = _writable_dir(Path(settings.cache_dir), "mmdemo-cache-")
    try:
        tasks.register_saved_heads(registry, cache_dir)
    except OSError as exc:  # an unreadable heads folder must not stop the app
        log.warning("could not list saved heads in %s: %s", cache_dir, exc)
    feature_cache = tasks.FeatureCache(cache_dir)
    examples = tasks.generated_examples(_writable_dir(cache_dir / "examples" / "classify", "mmdemo-classify-"))
    # Gradio serves only files under the temp dir or cwd; the head itself lives in cache_dir.
    downloads = Path(tempfile.mkdtemp(prefix="mmdemo-heads-"))
    jobs: dict[str, threading.Event] = {}  # session -> cancel flag of its running training
    jobs_lock = threading.Lock()

    def fusion_names() -> list[str]:
        return registry.names(kind="fusion")

    names = fusion_names()
    start_head = _default_head(names, "scene_qa")

    with gr.Tab("Classify", id="classify"):
        gr.Markdown("Classify an image with a text (and a sound) through a trained **fusion head**, or **zero-shot** "
                    "against labels you type; train your own heads and compare them with single-modality baselines. "
                    "The tiny bundle only knows the generated world (coloured shapes, synthetic sounds).")
        with gr.Tabs():
            with gr.Tab("Classify with a head", id="classify_head"):
                with gr.Row():
                    with gr.Column():
                        c_head = gr.Dropdown(names, value=start_head, label="Fusion head", elem_id="classify-head",
                                             allow_custom_value=True,  # heads trained after page load; checked by name
                                             info="Bundled heads are named tiny-head-<task>-<kind>; yours appear here "
                                                  "after training or upload.")
                        c_image = gr.Image(type="filepath", label="Image", elem_id="classify-image", height=220)
                        c_text = gr.Textbox(label="Text", placeholder="is there a red star?", elem_id="classify-text")
                        c_audio = gr.Audio(type="filepath", label="Audio (for heads that use it)",
                                           elem_id="classify-audio")
                        c_button = gr.Button("Classify", variant="primary")
                    with gr.Column():
                        c_label = gr.Label(num_top_classes=10, label="Prediction", elem_id="classify-label")
                        c_info = gr.Markdown(elem_id="classify-info")
                with gr.Row():
                    c_ablation = gr.Plot(label="Modality contribution", elem_id="classify-ablation")
                    c_explain = gr.Plot(label="What the head looked at", elem_id="classify-explain")
                gr.Examples(
                    [[_default_head(names, e["task"]), e["image"], e["text"], e["audio"]] for e in examples],
                    [c_head, c_image, c_text, c_audio], label="Generated examples (click one, then Classify)")

            with gr.Tab("Zero-shot", id="classify_zero_shot"):
                with gr.Row():
                    with gr.Column():
                        z_image = gr.Image(type="filepath", label="Image", elem_id="zs-image", height=220)
                        z_text = gr.Textbox(label="Text (optional)", elem_id="zs-text")
                        z_audio = gr.Audio(type="filepath", label="Audio (optional)", elem_id="zs-audio")
                        z_labels = gr.Textbox("red circle\nblue star\ngreen square\nyellow triangle", lines=5,
                                              label="Labels (one per line)", elem_id="zs-labels")
                        z_template = gr.Textbox(tasks.DEFAULT_TEMPLATE, label="Prompt template",
                                                info="{} stands for each label, e.g. 'a photo of {}'.")
                        with gr.Row():
                            z_w = [gr.Slider(0, 1, value=v, step=0.05, label=f"{m} weight", elem_id=f"zs-w-{m}")
                                   for m, v in (("image", 1.0), ("text", 0.5), ("audio", 0.5))]
                        z_button = gr.Button("Score labels", variant="primary")
                    with gr.Column():
                        z_label = gr.Label(num_top_classes=10, label="Fused prediction", elem_id="zs-label")
                        z_info = gr.Markdown(elem_id="zs-info")
                z_plot = gr.Plot(label="Each modality alone", elem_id="zs-plot")
                gr.Examples([[e["image"], "", "\n".join(e["zero_shot_labels"])] for e in examples if e["task"] == "scene_qa"],
                            [z_image, z_text, z_labels], label="Generated scenes with candidate labels")

            with gr.Tab("Train your own", id="classify_train"):
                with gr.Row():
                    with gr.Column():
                        gr.Markdown(CSV_HELP)
                        t_files = gr.File(file_count="multiple", type="filepath", label="CSV + media files, or a zip",
                                          file_types=[".csv", ".zip"] + sorted(IMAGE_SUFFIXES | AUDIO_SUFFIXES),
                                          elem_id="train-files")
                        t_button = gr.Button("Train on my data", variant="primary")
                    with gr.Column():
                        gr.Markdown("**Or a generated task**: the bundle's own tasks, where the answer needs "
                                    "both inputs, so fusion should beat every single modality.")
                        t_task = gr.Dropdown(list(_task_names()), value="scene_qa", label="Generated task")
                        t_n = gr.Slider(100, 10_000, value=2000, step=100, label="Examples")
                        t_gen_button = gr.Button("Train on a generated task", variant="secondary")
                with gr.Row():
                    t_kinds = gr.CheckboxGroup(list(tasks.HEAD_KINDS), value=DEFAULT_KINDS, label="Head types",
                                               elem_id="train-kinds")
                    t_epochs = gr.Slider(1, 200, value=tasks.DEFAULT_EPOCHS, step=1, label="Epochs (max; early stopping)")
                    t_lr = gr.Number(1e-3, label="Learning rate", minimum=1e-6, maximum=1.0)
                    t_name = gr.Textbox("my-head", label="Save the winner as", elem_id="train-name")
                    t_baselines = gr.Checkbox(True, label="Single-modality baselines")
                t_cancel = gr.Button("Cancel training", variant="stop")
                t_status = gr.Markdown(elem_id="train-status")
                t_chart = gr.Plot(label="Training (live)", elem_id="train-chart")
                t_board = gr.Dataframe(headers=BOARD_COLUMNS, interactive=False, label="Leaderboard (validation split)",
                                       elem_id="train-board")
                with gr.Row():
                    t_confusion = gr.Plot(label="Confusion matrix", elem_id="train-confusion")
                    with gr.Column():
                        t_file = gr.File(label="Download the winning head (.safetensors)", interactive=False,
                                         elem_id="train-download")
                        u_file = gr.File(type="filepath", file_types=[".safetensors"], label="Upload a head file",
                                         elem_id="upload-head")
                        u_name = gr.Textbox("", label="Name for the uploaded head (optional)")
                        u_button = gr.Button("Add uploaded head")
                        u_status = gr.Markdown(elem_id="upload-status")

        # ------------------------------------------------------------------ handlers

        @user_errors
        def classify(head, image, text, audio):
            handle = tasks.resolve_head(registry, head)
            clip = registry.for_slot("clip")
            audio_model = registry.for_slot("audio") if registry.profile.audio and "audio" in handle.modalities else None
            res = tasks.classify(handle, image, text, audio, clip, audio_model)
            warn_all(res.notices)
            top = res.labels[0]
            drops = ", ".join(f"without {a['modality']} {-a['top_drop']:+.1%}" for a in res.ablation)
            article = "an" if res.kind[0] in "aeiou" else "a"
            info = (f"**{top['label']}** ({top['score']:.1%}) from **{res.head}**, {article} {res.kind} head over "
                    f"{' + '.join(res.modalities)}.\n\nChange in P({top['label']}) when an input is removed: {drops}.")
            return ({r["label"]: r["score"] for r in res.labels}, info, ablation_figure(res), explanation_figure(res))

        @user_errors
        def zero_shot(image, text, audio, labels, template, w_image, w_text, w_audio):
            clip = registry.for_slot("clip")
            audio_model = registry.for_slot("audio") if registry.profile.audio and audio else None
            z = tasks.zero_shot(image, text, audio, labels, clip, audio_model, template=template,
                                weights={"image": w_image, "text": w_text, "audio": w_audio})
            warn_all(z.notices)
            mix = ", ".join(f"{m} {w:.2f}" for m, w in z.weights.items())
            info = f"Weights used (normalised): {mix}. Prompts like “{z.prompts[0]}”."
            return {r["label"]: r["score"] for r in z.labels}, info, zero_shot_figure(z)

        def train_stream(make_dataset, kinds, epochs, lr, name, baselines, request, progress):
            kinds = tasks.check_training_options(kinds, epochs, lr)
            save_as = tasks.head_name(name, "my-head")
            tasks.check_save_name(registry, save_as)
            cancel = threading.Event()
            session = getattr(request, "session_hash", None) or "local"
            with jobs_lock:
                if session in jobs:
                    raise MMDemoError("A training from this page is already running; wait for it or cancel it.")
                jobs[session] = cancel
            events: queue.Queue = queue.Queue()
            work = Path(tempfile.mkdtemp(prefix="mmdemo-train-"))
            outcome: dict = {}

            from mmdemo.training.fusion_trainer import TrainingCancelled

            def job():
                try:
                    clip = registry.for_slot("clip")
                    audio = registry.for_slot("audio") if registry.profile.audio else None
                    def on_rows(done, total):
                        if cancel.is_set():  # reading 20,000 rows takes a while: stop there too
                            raise TrainingCancelled("Training was cancelled; previously saved heads are unchanged.")
                        events.put({"stage": "reading", "done": done, "total": total})

                    ds = make_dataset(work, audio, on_rows)
                    report = tasks.train_on_dataset(ds, kinds, clip, audio, epochs=int(epochs), lr=float(lr),
                                                    baselines=bool(baselines), cache=feature_cache,
                                                    progress=events.put, cancel=cancel)
                    if cancel.is_set():
                        raise TrainingCancelled("Training was cancelled; previously saved heads are unchanged.")
                    tasks.save_trained_head(report, registry, cache_dir, save_as, clip, audio)
                    outcome["report"] = report
                except BaseException as exc:  # handed to the handler, which reports it
                    outcome["error"] = exc
                finally:
                    events.put(None)

            worker = threading.Thread(target=job, name=f"mmdemo-train-{save_as}", daemon=True)
            history: list[dict] = []
            planned = max(1, int(epochs) * (len(kinds) + (3 if baselines else 0)))
            skip = gr.skip()
            try:
                worker.start()
                progress(0, desc="Reading the data")
                yield "Reading the data…", skip, skip, skip, skip, skip
                last = 0.0
                while True:
                    try:
                        ev = events.get(timeout=0.25)
                    except queue.Empty:
                        continue
                    if ev is None:
                        break
                    if ev["stage"] in ("reading", "features"):
                        what = "Reading rows" if ev["stage"] == "reading" else "Extracting features"
                        progress((ev["done"], ev["total"]), desc=what)
                        status = f"{what}: {ev['done']:,} / {ev['total']:,}"
                    else:
                        history.append(ev)
                        progress(min(len(history) / planned, 0.99),
                                 desc=f"{ev['kind']}: epoch {ev['epoch']}/{ev['epochs']}")
                        status = (f"Training **{ev['kind']}**: epoch {ev['epoch']}/{ev['epochs']}, validation accuracy "
                                  f"{ev['val_accuracy']:.3f}")
                    now = time.monotonic()
                    if now - last >= CHART_EVERY_S:
                        last = now
                        yield status, training_figure(history) if history else skip, skip, skip, skip, skip
                worker.join()
            finally:
                cancel.set()  # the page went away or the generator was closed: stop the worker too
                with jobs_lock:
                    jobs.pop(session, None)
                shutil.rmtree(work, ignore_errors=True)
            if isinstance(outcome.get("error"), TrainingCancelled):
                gr.Warning(str(outcome["error"]))
                yield (f"Cancelled. {outcome['error']}", training_figure(history) if history else skip,
                       skip, skip, skip, skip)
                return
            if "error" in outcome:
                raise outcome["error"]
            report = outcome["report"]
            warn_all(report.notices)
            download = downloads / report.saved_path.name
            shutil.copyfile(report.saved_path, download)
            yield (report_summary(report), training_figure(report.history), board_rows(report),
                   confusion_figure(report), str(download),
                   gr.update(choices=fusion_names(), value=report.saved_as))

        @_stream_errors
        def train_upload(files, kinds, epochs, lr, name, baselines, request: gr.Request, progress=gr.Progress()):
            def make(work, audio, on_rows):
                return tasks.load_dataset_upload(files, work, audio_rate=getattr(audio, "sample_rate", 16000),
                                                 progress=on_rows)
            if not files:
                raise MMDemoError("Upload a CSV with its media files, or a zip (see the format above).")
            yield from train_stream(make, kinds, epochs, lr, name, baselines, request, progress)

        @_stream_errors
        def train_generated(task, n, kinds, epochs, lr, name, baselines, request: gr.Request, progress=gr.Progress()):
            def make(work, audio, on_rows):
                return tasks.generated_dataset(task, int(n))
            yield from train_stream(make, kinds, epochs, lr, name, baselines, request, progress)

        def cancel_training(request: gr.Request):
            with jobs_lock:
                ev = jobs.get(getattr(request, "session_hash", None) or "local")
            if ev is None:
                return "Nothing is training right now."
            ev.set()
            return "Cancelling… (the current epoch finishes first)"

        @user_errors
        def upload_head(path, name):
            if not path:
                raise MMDemoError("Choose a head file (.safetensors) to upload first.")
            added = tasks.import_head(path, registry, cache_dir, name or None)
            return (f"Added **{added}**; pick it in *Classify with a head*.",
                    gr.update(choices=fusion_names(), value=added))

        # Heads trained or uploaded in another session appear when the list is opened.
        c_head.focus(lambda: gr.update(choices=fusion_names()), None, c_head, api_name=False, queue=False)
        c_button.click(classify, [c_head, c_image, c_text, c_audio], [c_label, c_info, c_ablation, c_explain],
                       api_name="classify", concurrency_id=MODEL_CONCURRENCY_ID)
        z_inputs = [z_image, z_text, z_audio, z_labels, z_template, *z_w]
        z_button.click(zero_shot, z_inputs, [z_label, z_info, z_plot], api_name="classify_zero_shot",
                       concurrency_id=MODEL_CONCURRENCY_ID)
        for slider in z_w:  # moving a weight re-scores at once: the point of the sliders
            slider.release(zero_shot, z_inputs, [z_label, z_info, z_plot], api_name=False,
                           concurrency_id=MODEL_CONCURRENCY_ID, show_progress="minimal")
        train_outputs = [t_status, t_chart, t_board, t_confusion, t_file, c_head]
        t_button.click(train_upload, [t_files, t_kinds, t_epochs, t_lr, t_name, t_baselines], train_outputs,
                       api_name="train_heads", concurrency_id=TRAINING_CONCURRENCY_ID, concurrency_limit=1)
        t_gen_button.click(train_generated, [t_task, t_n, t_kinds, t_epochs, t_lr, t_name, t_baselines], train_outputs,
                           api_name="train_generated", concurrency_id=TRAINING_CONCURRENCY_ID, concurrency_limit=1)
        t_cancel.click(cancel_training, None, t_status, api_name="cancel_training", concurrency_limit=None)
        u_button.click(upload_head, [u_file, u_name], [u_status, c_head], api_name="upload_head")


def _task_names():
    from mmdemo.toyworld.tasks import TASKS

    return TASKS
