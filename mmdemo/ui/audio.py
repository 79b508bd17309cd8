"""The Audio tab: match a clip against text, search sounds by text and texts by sound.

Handlers call mmdemo.tasks.audio and only format its results (plotly figures,
tables, players). The audio model comes from ``registry.for_slot("audio", lazy=True)`` and
is used only through the AudioHandle interface, so another audio-text backend
plugs in without changes here. Result players are WAV files written once
(``common.ResultFiles``), never numpy clips that gradio would re-save per event.
"""

from __future__ import annotations

import wave
from pathlib import Path

import gradio as gr
import numpy as np

from mmdemo.hashing import file_hash
from mmdemo.media import AUDIO_SUFFIXES, load_audio
from mmdemo.tasks import audio as tasks
from mmdemo.tasks import prompts, saved_index
from mmdemo.ui.common import (MODEL_CONCURRENCY_ID, Galleries, ResultFiles, model_events, result_or_none, user_errors,
                              warn_all)
from mmdemo.ui import match_maps

INTRO = ("Match a sound against text, search sounds by text, or texts by a sound. "
         "The tiny bundle only knows generated sounds (tones, chirps, noises, clicks, chords); "
         "clips are mixed to mono, resampled and split into windows the model can hear.")

N_PLAYERS = 3
TIMELINE_MAX_LABELS = 8
DEFAULT_LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone",
                  "a series of fast clicks", "a major chord"]
BEST_COLUMNS = ["rank", "label", "probability", "similarity", "best window"]
SOUND_COLUMNS = ["rank", "sound", "similarity", "caption", "best window"]
TEXT_COLUMNS = ["rank", "text", "similarity"]


# --------------------------------------------------------------------------- formatting


def _span(start: float, end: float) -> str:
    return f"{start:.1f}–{end:.1f} s"


def _envelope(wave: np.ndarray, sr: int, bins: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max per bin: a faithful outline of a long wave without sending every sample."""
    if len(wave) <= bins * 2:
        t = np.arange(len(wave)) / sr
        return t, wave, wave
    edges = np.linspace(0, len(wave), bins + 1).astype(int)
    lo = np.minimum.reduceat(wave, edges[:-1])
    hi = np.maximum.reduceat(wave, edges[:-1])
    return edges[:-1] / sr, lo, hi


def heard_figure(m: tasks.AudioMatch):
    """Waveform (best window of the top label shaded) over the log-mel the model saw there."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    top = m.labels[0]["label"]
    a, b = m.mel_window
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14, row_heights=[0.35, 0.65], subplot_titles=(
        f"Waveform of {m.name} ({m.duration:.1f} s, mono {m.sample_rate // 1000} kHz)",
        f"Log-mel the model heard in {_span(a, b)} (best window for “{top}”)"))
    t, lo, hi = _envelope(m.wave, m.sample_rate)
    fig.add_trace(go.Scatter(x=t, y=hi, mode="lines", line=dict(width=0.6, color="#1f77b4"), showlegend=False,
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=lo, mode="lines", line=dict(width=0.6, color="#1f77b4"), fill="tonexty",
                             showlegend=False, hoverinfo="skip"), row=1, col=1)
    fig.add_vrect(x0=a, x1=b, fillcolor="orange", opacity=0.2, line_width=0, row=1, col=1)
    mel = np.asarray(m.mel)
    frames = a + np.arange(mel.shape[1]) * (m.window_seconds / max(mel.shape[1] - 1, 1))
    fig.add_trace(go.Heatmap(z=mel, x=frames, colorscale="Magma", colorbar=dict(title="log power", len=0.6, y=0.3),
                             hovertemplate="t=%{x:.2f} s<br>mel band %{y}<br>%{z:.1f}<extra></extra>"), row=2, col=1)
    fig.update_xaxes(title_text="seconds", row=1, col=1)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_yaxes(title_text="mel band", row=2, col=1)
    fig.update_layout(height=520, margin=dict(l=50, r=20, t=50, b=40))
    return fig


def timeline_figure(m: tasks.AudioMatch):
    """Similarity of each window to each label (top labels), best window marked."""
    import plotly.graph_objects as go

    centers = [(a + b) / 2 for a, b in m.windows]
    fig = go.Figure()
    col = {label: i for i, label in enumerate(m.label_order)}
    for row in m.best[:TIMELINE_MAX_LABELS]:
        sims = m.similarity[:, col[row["label"]]]
        fig.add_trace(go.Scatter(x=centers, y=sims, mode="lines+markers", name=row["label"],
                                 customdata=[_span(a, b) for a, b in m.windows],
                                 hovertemplate="%{customdata}<br>similarity %{y:.3f}<extra>%{fullData.name}</extra>"))
    hop = f", hop {m.windows[1][0] - m.windows[0][0]:.1f} s" if len(m.windows) > 1 else ""
    fig.update_layout(
        title=f"Similarity over time: {len(m.windows)} window(s) of up to {m.windows[0][1] - m.windows[0][0]:.1f} s{hop}",
        xaxis_title="window centre (s)", yaxis_title="cosine similarity", height=360,
        margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def best_rows(m: tasks.AudioMatch) -> list[list]:
    return [[i + 1, b["label"], round(b["score"], 4), round(b["similarity"], 4), _span(b["start"], b["end"])]
            for i, b in enumerate(m.best)]


def match_summary(m: tasks.AudioMatch) -> str:
    src = f"{m.original_sample_rate / 1000:g} kHz, {m.channels} channel{'s' if m.channels > 1 else ''}"
    top = m.best[0]
    tpl = prompts.describe(m.templates)
    return (f"**{m.name}**: {m.duration:.1f} s ({src}) → mono {m.sample_rate / 1000:g} kHz, "
            f"{len(m.windows)} window(s). Templates: {tpl}.\n\n"
            f"Best match: **{top['label']}** ({top['score']:.1%}), strongest in {_span(top['start'], top['end'])}.")


def _write_wav(f, sample_rate: int, samples: np.ndarray) -> None:
    """Mono 16-bit PCM WAV: playable in every browser, what gradio would convert float audio to."""
    with wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def _player(results: ResultFiles, path: str) -> str:
    """A result player's WAV file for the sound file at ``path``, named by its bytes and
    made on first use only: mono at the file's own rate, at most the gallery's length
    (what the search heard)."""
    def write(f) -> None:
        clip = load_audio(path, target_sr=None, max_seconds=tasks.MAX_GALLERY_SECONDS)
        _write_wav(f, clip.sample_rate, clip.wave)

    return results.get(f"player:{tasks.MAX_GALLERY_SECONDS}:wav16:{file_hash(path)}".encode(), ".wav", write)


def _example(results: ResultFiles) -> str:
    """The example clip as a WAV file, written once for every click of every session."""
    sr, samples = tasks.example_clip()
    key = f"example:{sr}:".encode() + np.ascontiguousarray(samples, np.float32).tobytes()
    return results.get(key, ".wav", lambda f: _write_wav(f, sr, samples))


# --------------------------------------------------------------------------- the tab


def build(registry, settings, saved_indexes=None):
    """Lay out the Audio tab inside the current gr.Blocks context. ``saved_indexes``: the
    --gallery-index files, opened (``build_demo`` opens them once for every tab)."""
    if saved_indexes is None:
        saved_indexes = saved_index.open_gallery_indexes(settings.gallery_indexes)
    saved = saved_indexes.get("audio")
    galleries = Galleries(tasks.build_gallery, tasks.default_gallery_files, settings.cache_dir,
                          desc="Reading sounds", prefix="mmdemo-audio-", saved=saved)
    players = ResultFiles(prefix="mmdemo-players-")
    searched_by_default = (f"the saved index {saved.path.name}" if saved is not None else
                           f"{sum(1 for p in galleries.folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)} "
                           "example sounds")

    with gr.Tab("Audio", id="audio"):
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Match a clip", id="audio_match"):
                with gr.Row():
                    with gr.Column():
                        m_clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip",
                                          elem_id="audio-match-clip")
                        m_labels = gr.Textbox("\n".join(DEFAULT_LABELS), lines=6,
                                              label="Labels or descriptions (one per line)")
                        m_templates = gr.Textbox("", lines=2, label="Prompt templates (optional, one per line)",
                                                 placeholder="the sound of {}\na recording of {}",
                                                 info="{} stands for each label; several templates are averaged.")
                        m_template_set = gr.Dropdown(prompts.builtin_choices("audio"), value=None,
                                                     label="Built-in template set", elem_id="audio-template-set",
                                                     info="Fills the templates above; the tiny bundle reads only "
                                                          "its own words.")
                        with gr.Row():
                            m_button = gr.Button("Match", variant="primary")
                            m_example = gr.Button("Try an example clip (a chirp, then noise)")
                    with gr.Column():
                        m_ranked = gr.Label(num_top_classes=10, label="Ranked matches (probability)")
                        m_info = gr.Markdown()
                m_heard = gr.Plot(label="What the model heard", elem_id="audio-heard")
                m_timeline = gr.Plot(label="Similarity over time", elem_id="audio-timeline")
                m_table = gr.Dataframe(headers=BEST_COLUMNS, interactive=False, label="Best window per label",
                                       elem_id="audio-best-table")
                m_why = match_maps.audio_panel("audio-match")

            with gr.Tab("Search sounds by text", id="audio_search"):
                with gr.Row():
                    with gr.Column():
                        s_query = gr.Textbox("a rising chirp", label="Describe the sound")
                        s_k = gr.Slider(1, 20, value=5, step=1, label="Results")
                        if saved is not None:
                            gr.Markdown(f"Searching {saved_index.summary(saved)}", elem_id="audio-saved-index")
                        s_files = gr.File(file_count="multiple", type="filepath", label=(
                            f"Your sounds or a zip (optional; default: {searched_by_default})"),
                            file_types=sorted(AUDIO_SUFFIXES) + [".zip"], elem_id="audio-gallery-files")
                        s_button = gr.Button("Search sounds", variant="primary")
                    with gr.Column():
                        s_players = [gr.Audio(type="filepath", interactive=False, label=f"#{i + 1}", visible=i == 0,
                                              elem_id=f"audio-player-{i}")
                                     for i in range(N_PLAYERS)]
                s_table = gr.Dataframe(headers=SOUND_COLUMNS, interactive=False, label="Matching sounds",
                                       elem_id="audio-sounds-table")
                s_why = match_maps.audio_panel("audio-search")

            with gr.Tab("Search texts by audio", id="audio_texts"):
                with gr.Row():
                    with gr.Column():
                        t_clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip",
                                          elem_id="audio-texts-clip")
                        t_texts = gr.Textbox("\n".join(tasks.example_texts()), lines=8,
                                             label="Texts to search (one per line)")
                        t_k = gr.Slider(1, 20, value=5, step=1, label="Results")
                        with gr.Row():
                            t_button = gr.Button("Search texts", variant="primary")
                            t_example = gr.Button("Try an example clip")
                    t_table = gr.Dataframe(headers=TEXT_COLUMNS, interactive=False, label="Closest texts",
                                           elem_id="audio-texts-table")
                t_why = match_maps.audio_panel("audio-texts")

        @user_errors
        def match(clip, labels, templates):
            """Match an audio clip against text labels (zero-shot): which label describes the sound best.

            Args:
                clip: the sound (an http(s) URL of a WAV, FLAC, OGG or MP3 file).
                labels: candidate labels, one per line, e.g. "a rising chirp".
                templates: prompt templates with {} for the label, one per line, averaged; empty = the label alone.

            Returns:
                the ranked labels with probabilities ({label, confidences})
                a summary (Markdown)
                charts of the waveform and log-mel, and of each label's score over time
                a table [rank, label, probability, similarity, best window]
            """
            audio = registry.for_slot("audio", lazy=True)
            m = tasks.match_audio(clip, labels, audio, templates=templates)
            warn_all(m.notices)
            ranked = {r["label"]: r["score"] for r in m.labels}
            return ranked, match_summary(m), heard_figure(m), timeline_figure(m), best_rows(m)

        @user_errors
        def search_sounds(query, k, files, progress=gr.Progress()):
            """Search sounds by text: rank a gallery of audio clips by similarity to a description.

            Args:
                query: what the sound is, e.g. "a rising chirp".
                k: how many sounds to return, 1-20.
                files: your sounds or zips to search (http(s) URLs); none = the app's saved index if it has
                    one (--gallery-index), else the built-in example sounds.

            Returns:
                A table [rank, sound, similarity, caption, best window] and players for the best three.
            """
            audio = registry.for_slot("audio", lazy=True)
            with galleries.searched(files, audio, progress) as gallery:
                hits = tasks.search_gallery(gallery, query, audio, k=int(k))
                # Players now: extracted zip members are gone once this returns. A saved index's
                # sound whose file moved away keeps its row, without a player.
                shown, missing = [], []
                for i, h in enumerate(hits):
                    if len(shown) == N_PLAYERS:  # past the players: only whether its file is still there
                        wav = h["path"] if h["path"] and Path(h["path"]).is_file() else None
                    else:
                        wav = result_or_none(_player, players, h["path"])
                        if wav is not None:
                            shown.append(gr.update(value=wav, visible=True,
                                                   label=f"#{i + 1} {h['label']} ({h['score']:.3f})"))
                    if wav is None:
                        missing.append(h["label"])
            gone = saved_index.missing_files_notice(missing, "player")
            warn_all(gallery.notices + tasks.unknown_words_notice(audio, [query]) + ([gone] if gone else []))
            shown += [gr.update(value=None, visible=False)] * (N_PLAYERS - len(shown))
            rows = [[i + 1, h["label"], round(h["score"], 4), h["caption"], _span(h["start"], h["end"])]
                    for i, h in enumerate(hits)]
            return (rows, *shown)

        @user_errors
        def search_texts_by_audio(clip, texts, k):
            """Search texts by audio: rank a list of texts by similarity to a sound.

            Args:
                clip: the sound (an http(s) URL of an audio file).
                texts: the texts to rank, one per line.
                k: how many texts to return, 1-20.

            Returns:
                A table [rank, text, similarity] of the closest texts.
            """
            audio = registry.for_slot("audio", lazy=True)
            res = tasks.search_texts_by_audio(clip, texts, audio, k=int(k))
            warn_all(res.notices)
            return [[i + 1, h["label"], round(h["score"], 4)] for i, h in enumerate(res.hits)]

        def example():
            """Make an example clip to try the audio tools with: eight seconds of two generated sounds.

            Returns:
                The URL of a WAV file (pass it as the clip of match or search_texts_by_audio).
            """
            return _example(players)

        @user_errors
        def fill_templates(name):
            return prompts.builtin_set("audio", name).text if name else gr.update()

        m_template_set.change(fill_templates, m_template_set, m_templates, api_name=False, queue=False)
        m_example.click(example, None, m_clip, api_name="audio_example_clip", queue=False)
        t_example.click(example, None, t_clip, api_name=False, queue=False)
        matching = m_button.click(match, [m_clip, m_labels, m_templates],
                                  [m_ranked, m_info, m_heard, m_timeline, m_table],
                                  api_name="match_audio", concurrency_id=MODEL_CONCURRENCY_ID)
        explain_audio = match_maps.audio_explainer(registry)
        match_maps.listen_audio(m_why, explain_audio, (matching, [m_ranked]), m_clip, match_maps.ranked_labels,
                                templates=m_templates, api_name="explain_audio_text")
        sound_searches = model_events([s_button.click, s_query.submit], search_sounds, [s_query, s_k, s_files],
                                      [s_table, *s_players], api_name="search_audio")
        # When (and in which band) the best sound matched the query.
        match_maps.listen_audio(s_why, explain_audio, (sound_searches, [s_query]), s_players[0], lambda q: [q])
        text_search = t_button.click(search_texts_by_audio, [t_clip, t_texts, t_k], [t_table],
                                     api_name="search_texts_by_audio", concurrency_id=MODEL_CONCURRENCY_ID)
        match_maps.listen_audio(t_why, explain_audio, (text_search, [t_table]), t_clip, match_maps.table_texts)
    return players.close  # build_demo runs it when the app closes
