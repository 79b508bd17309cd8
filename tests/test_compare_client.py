"""The Compare tab's API (/compare_models, /compare_heads) through gradio_client on the tiny bundle."""

import math
import os
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers.outputs import plotly_traces


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from mmdemo.tasks.classify import generated_examples

    return generated_examples(tmp_path_factory.mktemp("examples"))


def _scene(examples):
    return next(e for e in examples if e["task"] == "scene_qa")


def _compare(client, image, texts, models, mode="rank"):
    return client.predict(handle_file(image) if image else None, texts, models, mode, api_name="/compare_models")


def test_two_models_side_by_side_in_one_table(client, examples):
    scene = _scene(examples)
    texts = scene["zero_shot_labels"]
    summary, table, plot, result = _compare(client, scene["image"], "\n".join(texts), ["tiny-clip", "tiny-coca"])
    assert table["headers"][:4] == ["model", "kind", "answer", "probability"]
    assert table["headers"][4:4 + len(texts)] == texts
    assert [row[0] for row in table["data"]] == ["tiny-clip", "tiny-coca"]
    for row in table["data"]:
        probs = row[4:4 + len(texts)]
        assert math.isclose(sum(probs), 1.0, abs_tol=2e-3)  # rounded to 4 places in the table
        assert row[2] == texts[probs.index(max(probs))] and row[3] == max(probs)
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["tiny-clip", "tiny-coca"] and all(r["ok"] for r in rows)
    assert all(math.isclose(sum(r["scores"].values()), 1.0, abs_tol=1e-4) for r in rows)
    assert rows[0]["answer"] in scene["objects"]
    assert "agree" in summary or "disagree" in summary
    assert [t["name"] for t in plotly_traces(plot)] == ["tiny-clip", "tiny-coca"]


def test_captions_side_by_side_and_an_unknown_model_is_a_row(client, examples):
    scene = _scene(examples)
    summary, table, plot, result = _compare(client, scene["image"], "", ["tiny-coca", "tiny-clip", "no-such-model"],
                                            mode="caption")
    assert table["headers"] == ["model", "kind", "caption", "load s", "run s", "error"]
    coca, clip, unknown = table["data"]
    assert coca[0] == "tiny-coca" and coca[2].startswith("a ") and coca[5] == ""
    assert clip[0] == "tiny-clip" and clip[2] == "" and "writes no captions" in clip[5]
    assert unknown[0] == "no-such-model" and "No model named 'no-such-model'" in unknown[5]
    assert "tiny-coca" in unknown[5]  # the models that can caption
    assert "2 of 3 could not answer" in summary
    assert plot is None  # captions have no probabilities to chart


@pytest.mark.parametrize("image, texts, models, mode, message", [
    ("scene", "a red circle", ["tiny-clip"], "rank", "Pick at least 2 different models"),
    ("scene", "a red circle", [], "rank", "Pick at least 2 different models"),
    ("scene", "a red circle", ["tiny-clip", "tiny-coca", "a", "b", "c"], "rank", "Pick at most 4 models"),
    (None, "a red circle", ["tiny-clip", "tiny-coca"], "rank", "Upload, paste or pick an image"),
    ("scene", "", ["tiny-clip", "tiny-coca"], "rank", "Type the candidate texts"),
    ("scene", "a\nb", ["tiny-clip", "tiny-coca"], "vote", "Unknown comparison mode"),
    ("corrupt", "a red circle", ["tiny-clip", "tiny-coca"], "rank", "bad.png"),
])
def test_bad_input_gets_a_clear_message_and_the_server_keeps_serving(client, examples, tmp_path, image, texts,
                                                                     models, mode, message):
    scene = _scene(examples)
    if image == "corrupt":
        image = tmp_path / "bad.png"
        image.write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    elif image == "scene":
        image = scene["image"]
    with pytest.raises(AppError) as err:
        _compare(client, image and str(image), texts, models, mode)
    assert message in str(err.value) and "Traceback" not in str(err.value)
    # Still serving: the next good request answers.
    _, table, _, _ = _compare(client, scene["image"], "a red circle\na blue star", ["tiny-clip", "tiny-coca"])
    assert len(table["data"]) == 2


def test_every_head_side_by_side_with_contributions(client, examples):
    ex = next(e for e in examples if e["task"] == "scene_sound_match")
    summary, table, plot, result = client.predict(handle_file(ex["image"]), ex["text"], handle_file(ex["audio"]),
                                                  [], api_name="/compare_heads")
    heads = [row[0] for row in table["data"]]
    assert len(heads) == 10 and all(h.startswith("tiny-head-") for h in heads)
    col = {h: i for i, h in enumerate(table["headers"])}
    for row in table["data"]:
        assert row[col["status"]] == "ok"
        assert 0.5 <= row[col["probability"]] <= 1
        uses_audio = "sound_match" in row[0]
        assert (row[col["audio contribution"]] != "") == uses_audio
        assert isinstance(row[col["image contribution"]], float) and isinstance(row[col["text contribution"]], float)
    assert "10** of 10 heads ran on image + text + audio" in summary
    traces = plotly_traces(plot)
    assert [t["name"] for t in traces] == ["without image", "without text", "without audio"]
    assert len(result["rows"]) == 10 and all(set(r["contributions"]) <= {"image", "text", "audio"}
                                             for r in result["rows"])
    # Heads that need the audio say so when it is missing; the others still answer.
    summary, table, _, _ = client.predict(handle_file(ex["image"]), ex["text"], None, [], api_name="/compare_heads")
    status = {row[0]: row[-1] for row in table["data"]}
    assert all(s == "ok" for h, s in status.items() if "scene_qa" in h)
    assert all("add the audio" in s for h, s in status.items() if "sound_match" in h)


def test_picked_heads_and_bad_head_inputs(client, examples):
    scene = _scene(examples)
    _, table, _, _ = client.predict(handle_file(scene["image"]), scene["text"], None,
                                    ["tiny-head-scene_qa-gated", "no-such-head"], api_name="/compare_heads")
    gated, unknown = table["data"]
    assert gated[0] == "tiny-head-scene_qa-gated" and gated[-1] == "ok" and gated[-2].startswith("gates:")
    assert "No head named 'no-such-head'" in unknown[-1]
    with pytest.raises(AppError, match="Give the heads an input"):
        client.predict(None, "", None, [], api_name="/compare_heads")
    bad = Path(scene["image"]).with_name("compare-client-truncated.png")
    bad.write_bytes(Path(scene["image"]).read_bytes()[:40])
    try:
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(bad)), scene["text"], None, [], api_name="/compare_heads")
        assert "compare-client-truncated.png" in str(err.value)
    finally:
        bad.unlink()
    _, table, _, _ = client.predict(handle_file(scene["image"]), scene["text"], None, ["tiny-head-scene_qa-concat"],
                                    api_name="/compare_heads")
    assert table["data"][0][-1] == "ok"


def test_every_head_includes_this_sessions_own_head_and_no_one_elses(tiny_app, examples):
    """A head uploaded in the Classify tab is compared in the same session only."""
    from mmdemo.paths import TINY_BUNDLE_DIR

    mine, other = Client(tiny_app[1], verbose=False), Client(tiny_app[1], verbose=False)
    name = f"compare-mine-{os.getpid()}"
    status, _ = mine.predict(handle_file(str(TINY_BUNDLE_DIR / "heads" / "scene_qa-gated.safetensors")), name,
                             api_name="/upload_head")
    assert name in status
    scene = _scene(examples)
    _, table, _, _ = mine.predict(handle_file(scene["image"]), scene["text"], None, [], api_name="/compare_heads")
    rows = {row[0]: row for row in table["data"]}
    assert rows[name][-1] == "ok" and rows[name][1] == "gated"
    # Same weights as the bundled head it copies: the same answer, side by side.
    assert rows[name][3:5] == rows["tiny-head-scene_qa-gated"][3:5]
    _, table, _, _ = other.predict(handle_file(scene["image"]), scene["text"], None, [], api_name="/compare_heads")
    assert name not in {row[0] for row in table["data"]}
    _, table, _, _ = other.predict(handle_file(scene["image"]), scene["text"], None, [name],
                                   api_name="/compare_heads")
    assert f"No head named '{name}'" in table["data"][0][-1]
