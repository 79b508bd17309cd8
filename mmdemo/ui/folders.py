"""The Folders tab: a zip (or many files) through one task, with a results table and export.

The handler is a generator over :class:`mmdemo.tasks.folders.FolderRun`: after each batch
it rewrites this request's ``results.csv`` and ``results.json`` (atomically, in a folder
of the request's own) and yields the table so far with those files. Stop cancels the
event between batches; what was yielded last (table and downloads alike) stays, so a
stopped run keeps the rows done so far.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import gradio as gr

from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from mmdemo.registry import Registry
from mmdemo.tasks import folders as tasks
from mmdemo.tasks.classify.heads import HeadStore, owner_of
from mmdemo.ui.common import file_path, user_errors, warn_all

INTRO = ("Run one task over a whole folder: upload a **zip** (or many files) of images or sounds, pick a task, "
         f"and get one row per file (up to {tasks.MAX_FOLDER_FILES} files). A file that can't be read is a row "
         "with its error; **Stop** keeps the rows done so far. A `captions.json` in the zip "
         "(`{\"file name\": \"caption\"}`) fills the caption column, and with no candidates typed, "
         "*Rank captions* ranks the folder's own captions.")
# A run holds its slot for minutes: runs queue in a group of their own (two at a time), so
# they never take the shared model group's slots from the other tabs' one-off requests.
FOLDERS_CONCURRENCY_ID = "folders"
# Table and downloads go to the page at most this often (every batch is still written to disk):
# a 2,000-row table resent after every 32 files would be most of the traffic.
YIELD_EVERY_S = 0.5
# Request folders (results and extracted zips) older than this are removed when a new run starts.
KEEP_RUNS_S = 3600.0


class RunFolders:
    """One folder per request under this app's temp folder: its results files and, while it
    runs, its extracted zip. Old ones are pruned as new runs start; all go when the app closes."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mmdemo-folders-"))
        self._lock = threading.Lock()
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def new(self) -> Path:
        cutoff = time.time() - KEEP_RUNS_S
        with self._lock:
            for old in self.root.iterdir():
                try:
                    if old.stat().st_mtime < cutoff:
                        shutil.rmtree(old, ignore_errors=True)
                except OSError:
                    pass
            return Path(tempfile.mkdtemp(prefix="run-", dir=self.root))

    def close(self) -> None:
        self._remove()


def _sources(files) -> list:
    """Unprocessed multi-file payload -> paths (preprocess=False: our loaders judge the files,
    with our messages, instead of gradio's file-type check)."""
    items = files if isinstance(files, list) else ([files] if files else [])
    return [p for p in map(file_path, items) if p]


def _status(run: tasks.FolderRun, rows: list, *, done: bool) -> str:
    errors = sum(1 for r in rows if r.error)
    head = (f"**Done**: {len(rows)} file(s)" if done else f"**Running**: {len(rows)} of {len(run)} file(s)")
    lines = [f"{head}, {errors} error(s). Task: {tasks.TASKS[run.task]}."]
    if done and run.task == "rank" and any(r.caption for r in rows):
        known = [r for r in rows if r.caption and not r.error]
        hits = sum(r.answer == r.caption for r in known)
        lines.append(f"Top caption is the file's own caption for {hits} of {len(known)} captioned file(s).")
    notices = list(dict.fromkeys(run.notices))
    if notices:
        lines.append("**Notes**\n" + "\n".join(f"- {n}" for n in notices))
    return "\n\n".join(lines)


def _stopped(status: str | None) -> str:
    return (status or "").replace("**Running**:", "**Stopped**:", 1)


def build(registry: Registry, settings=None):
    from mmdemo.settings import Settings

    settings = settings or Settings()
    runs = RunFolders()
    heads = HeadStore(registry, settings.cache_dir)
    fusion = registry.names(kind="fusion")

    def owner_heads(request):
        # The same owners as the Classify tab (owner_of), so a head trained there is listed here too.
        return heads.of(owner_of(request))

    with gr.Tab("Folders", id="folders"):
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                files = gr.File(file_count="multiple", label="A zip, or several files (captions.json optional)",
                                file_types=[".zip", ".json"] + sorted(IMAGE_SUFFIXES | AUDIO_SUFFIXES),
                                elem_id="folders-files")
                task = gr.Radio([(label, key) for key, label in tasks.TASKS.items()], value="rank", label="Task",
                                elem_id="folders-task")
                texts = gr.Textbox("", lines=4, label="Candidate captions (one per line)",
                                   placeholder="Rank captions: blank = the zip's captions.json, else the built-in "
                                               "bank. Zero-shot and Match audio: the labels.",
                                   elem_id="folders-texts")
                template = gr.Textbox("", label="Prompt template(s), {} = the label", visible=False,
                                      placeholder="Zero-shot: 'a {}' when blank; Match audio: one per line, "
                                                  "averaged", elem_id="folders-template")
                with gr.Accordion("Classify with a head", open=False, visible=False) as head_box:
                    head = gr.Dropdown(fusion, value=fusion[0] if fusion else None, label="Fusion head",
                                       allow_custom_value=True, elem_id="folders-head")
                    text = gr.Textbox("", label="Text every image goes with (blank: its caption)",
                                      placeholder="is there a red star?", elem_id="folders-text")
                with gr.Accordion("Captioning", open=False, visible=False) as caption_box:
                    method = gr.Radio([("beam search", "beam"), ("greedy", "greedy")], value="beam", label="Decoding")
                    max_length = gr.Slider(4, 40, value=20, step=1, label="Max length (tokens)")
                with gr.Row():
                    run_button = gr.Button("Run", variant="primary", elem_id="folders-run")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="folders-stop")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="folders-status")
                downloads = gr.File(label="Results (CSV and JSON)", file_count="multiple", interactive=False,
                                    elem_id="folders-downloads")
                table = gr.Dataframe(headers=list(tasks.COLUMNS), interactive=False, wrap=True,
                                     label="One row per file", elem_id="folders-table")

        @user_errors
        def run_folder(files, task, texts, template, head, text, method, max_length, request: gr.Request,
                       progress=gr.Progress()):
            """Run one task over every file of a zip (or several files): one result row per file.

            Args:
                files: a zip of images or sounds, or several files (URLs); a captions.json among them gives captions.
                task: caption, rank (rank captions), zero_shot, match_audio (sounds) or classify (a fusion head).
                texts: candidate captions (rank; empty = the zip's captions.json) or labels, one per line.
                template: prompt templates with {} for the label, one per line, averaged (zero_shot, match_audio).
                head: the fusion head to classify with (classify only), e.g. tiny-head-scene_qa-concat.
                text: the text every image goes with (classify; empty = each file's caption).
                method: caption decoding, beam or greedy.
                max_length: the longest caption in tokens (caption).

            Returns:
                a table [file, answer, score, caption, error], one row per file (a bad file: its error)
                the results as [results.csv, results.json]
                a status line (Markdown): files done, errors, notes
            """
            key = tasks.parse_task(task)
            handle = None
            if key == "classify":  # the sender's own head of that name, else the registry's
                handle = owner_heads(request).resolve(head)
            models = tasks.FolderModels.for_task(registry, key, handle)
            options = tasks.FolderOptions(texts=texts, template=template, head=handle, text=text, method=method,
                                          max_length=max_length)
            folder = runs.new()
            extract = folder / "files"
            try:
                try:
                    run = tasks.FolderRun(_sources(files), key, options, models, extract_dir=extract)
                except Exception:
                    shutil.rmtree(folder, ignore_errors=True)  # nothing to download
                    raise
                warn_all(run.notices)
                outs = [folder / "results.csv", folder / "results.json"]
                rows: list = []
                progress((0, len(run)), desc="Files")
                yield [], None, _status(run, rows, done=False)
                shown_at = time.monotonic()
                for batch in run.batches():
                    rows += batch
                    for out in outs:
                        tasks.write_results(out, rows, run.summary(rows, complete=len(rows) == len(run)))
                    progress((len(rows), len(run)), desc="Files")
                    if time.monotonic() - shown_at >= YIELD_EVERY_S or len(rows) == len(run):
                        shown_at = time.monotonic()
                        yield ([r.cells() for r in rows], [str(p) for p in outs],
                               _status(run, rows, done=len(rows) == len(run)))
            finally:
                shutil.rmtree(extract, ignore_errors=True)  # results stay for the download

        def task_inputs(key):
            """Show the inputs the picked task reads (the API takes them all)."""
            labels = key in ("zero_shot", "match_audio")
            return (gr.update(visible=key in ("rank", "zero_shot", "match_audio"),
                              label="Labels (one per line)" if labels else "Candidate captions (one per line)"),
                    gr.update(visible=labels), gr.update(visible=key == "classify", open=key == "classify"),
                    gr.update(visible=key == "caption"))

        def head_choices(request: gr.Request):
            return gr.update(choices=owner_heads(request).names())

        event = run_button.click(run_folder, [files, task, texts, template, head, text, method, max_length],
                                 [table, downloads, status], api_name="run_folder",
                                 concurrency_id=FOLDERS_CONCURRENCY_ID, concurrency_limit=2, preprocess=False)
        # The status line stays as the last batch left it, so it must not keep saying "Running".
        stop_button.click(_stopped, status, status, cancels=[event], api_name=False, queue=False)
        head.focus(head_choices, None, head, api_name=False, queue=False)
        task.change(task_inputs, task, [texts, template, head_box, caption_box], api_name=False, queue=False)
    return runs.close
