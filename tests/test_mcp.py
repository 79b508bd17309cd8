"""--mcp: the app's named endpoints as MCP tools for LLM clients (Gradio's MCP server),
listed and called through the real `mcp` client over streamable HTTP, in-process. Without
--mcp there is no MCP route at all; with --auth it is refused (Gradio's MCP server would
answer without the login)."""

import asyncio
import base64
import io
import socket

import httpx
import pytest
import soundfile as sf

from mmdemo.errors import MMDemoError
from mmdemo.settings import Settings, parse_settings
from tests.helpers.galleries import unique_caption

mcp = pytest.importorskip("mcp", reason="--mcp needs gradio[mcp] (requirements.txt)")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

MCP_PATH = "gradio_api/mcp/"
# What an agent must be able to do: caption, rank captions, search images by text and texts
# by image, match audio to labels, search sounds and texts by sound, classify (head, zero-shot),
# and show why an image or a sound matched a text.
CORE_TOOLS = {"caption", "rank", "search_images", "search_texts", "match", "search_sounds", "search_texts_by_audio",
              "classify", "zero_shot", "load", "explain_image_text", "explain_audio_text"}
GRADIO_FILE_NOTE = "If a user passes a file as an input, use the upload_file_to_gradio tool"
LABELS = "a rising chirp\na burst of white noise\na low sine tone"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mcp_app(session_cache):
    """The tiny app served with --mcp, as `python app.py --mcp` runs it."""
    from mmdemo.ui.app import build_demo, launch

    settings = Settings(device="cpu", max_upload_mb=5, cache_dir=session_cache, mcp=True)
    demo = build_demo(settings)
    launch(demo, settings, server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo, demo.local_url
    demo.close()


def with_session(url: str, work):
    """Run ``await work(session)`` in one MCP client session to the app at ``url``."""
    async def main():
        async with streamable_http_client(url + MCP_PATH) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(main())


def data_url(data: bytes, mime: str) -> str:
    """A file as an agent may pass it inline (Gradio saves data: URLs to its cache)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def example_wav() -> str:
    from mmdemo.tasks.audio import example_clip

    sr, samples = example_clip()  # a rising chirp, then white noise
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV")
    return data_url(buf.getvalue(), "audio/wav")


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_tools_are_listed_with_descriptions_from_the_docstrings(mcp_app):
    tools = {t.name: t for t in with_session(mcp_app[1], lambda s: _tools(s))}
    assert CORE_TOOLS <= set(tools), sorted(tools)
    # Every tool says what it does in its own words (Gradio adds a sentence about files to any
    # tool with a file input, docstring or not: that one does not count).
    own = {n: (t.description or "").split(GRADIO_FILE_NOTE)[0].strip() for n, t in tools.items()}
    assert [n for n, d in own.items() if not d] == []
    assert tools["caption"].description.startswith("Write captions for an image")
    assert "Returns:" in tools["match"].description and "confidences" in tools["match"].description
    # Argument descriptions come from each docstring's Args: section.
    props = tools["match"].inputSchema["properties"]
    assert props["labels"]["description"].startswith("candidate labels, one per line")
    assert "cpu, cuda or mps" in tools["load"].inputSchema["properties"]["device"]["description"]
    # UI-only listeners (tab switches, example fillers) have no endpoint, so no tool.
    assert not any(n.startswith(("lambda", "head_choices", "fill_templates")) for n in tools)


async def _tools(session):
    return (await session.list_tools()).tools


def test_match_audio_through_mcp_ranks_the_sounds_in_the_clip(mcp_app):
    result = with_session(mcp_app[1], lambda s: s.call_tool(
        "match", {"clip": example_wav(), "labels": LABELS, "templates": ""}))
    assert not result.isError, text_of(result)
    text = text_of(result)
    top = text.split("'label': '", 1)[1].split("'", 1)[0]
    assert top in ("a rising chirp", "a burst of white noise"), text[:300]
    assert "8.0 s" in text  # the summary names what was heard


def test_search_texts_by_image_through_mcp(mcp_app, session_cache):
    from mmdemo.tasks.image.gallery import default_gallery_files

    folder = default_gallery_files(session_cache)
    name, caption = unique_caption(folder)
    image = data_url((folder / name).read_bytes(), "image/png")
    texts = f"{caption}\na small purple ring on a checkered background\nnothing at all"
    result = with_session(mcp_app[1], lambda s: s.call_tool("search_texts", {"image": image, "texts": texts, "k": 2}))
    assert not result.isError, text_of(result)
    rows = text_of(result).split("'data': ", 1)[1]
    assert rows.startswith("[[1, ") and "[2, " in rows and "[3, " not in rows  # k rows, ranked


def test_classify_with_a_head_through_mcp(mcp_app, session_cache):
    from mmdemo.tasks.image.gallery import default_gallery_files

    image = data_url((default_gallery_files(session_cache) / "00-small-red-diamond.png").read_bytes(), "image/png")
    head = "tiny-head-scene_qa-attention"
    answers = {}
    for question in ("is there a red diamond?", "is there a blue heart?"):
        result = with_session(mcp_app[1], lambda s: s.call_tool(
            "classify", {"head": head, "image": image, "text": question}))
        assert not result.isError, text_of(result)
        assert f"from **{head}**" in text_of(result)
        answers[question] = text_of(result).split("'label': '", 1)[1].split("'", 1)[0]
    assert answers == {"is there a red diamond?": "yes", "is there a blue heart?": "no"}


def test_classify_without_audio_through_mcp(mcp_app):
    tools = {t.name: t for t in with_session(mcp_app[1], lambda s: _tools(s))}
    assert "audio" not in tools["classify"].inputSchema.get("required", [])


def test_bad_input_is_an_error_result_and_the_server_keeps_serving(mcp_app):
    async def work(session):
        empty = await session.call_tool("match", {"clip": example_wav(), "labels": "", "templates": ""})
        not_a_file = await session.call_tool("match", {"clip": "my_sound.wav", "labels": LABELS})
        again = await session.call_tool("match", {"clip": example_wav(), "labels": LABELS, "templates": ""})
        return empty, not_a_file, again

    empty, not_a_file, again = with_session(mcp_app[1], work)
    assert empty.isError and text_of(empty) == "Enter at least one label (one per line)."
    assert not_a_file.isError and "provide a url" in text_of(not_a_file)
    assert not again.isError and "a rising chirp" in text_of(again)
    # A new session too: the server still serves.
    assert CORE_TOOLS <= {t.name for t in with_session(mcp_app[1], lambda s: _tools(s))}


def assert_no_mcp_route(url: str) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "test", "version": "1"}}}
    answer = httpx.post(url + MCP_PATH, json=initialize, headers={"accept": "application/json, text/event-stream"})
    assert answer.status_code == 404
    for path in (MCP_PATH, MCP_PATH + "schema", MCP_PATH + "sse"):
        assert httpx.get(url + path).status_code == 404, path


def test_without_mcp_there_is_no_mcp_route(test_app):
    assert_no_mcp_route(test_app[1])


def test_gradios_own_mcp_variable_does_not_open_the_route(test_catalog, launch_app, monkeypatch):
    """Gradio reads GRADIO_MCP_SERVER when launch() is not told: only --mcp / MMDEMO_MCP decide here."""
    monkeypatch.setenv("GRADIO_MCP_SERVER", "true")
    _, url = launch_app(Settings(profile="test", catalog=test_catalog, device="cpu"))
    assert_no_mcp_route(url)


def test_mcp_flag_and_environment_and_refusals():
    assert parse_settings(["--mcp"]).mcp and parse_settings([], {"MMDEMO_MCP": "1"}).mcp
    assert not parse_settings([], {}).mcp and not parse_settings([], {"MMDEMO_MCP": "0"}).mcp
    with pytest.raises(MMDemoError, match="--mcp cannot be combined with --auth"):
        parse_settings(["--mcp", "--auth", "ann:s3cret"])
    with pytest.raises(MMDemoError, match="--mcp cannot be combined with --auth"):
        Settings(mcp=True, auth=("ann", "s3cret"))


def test_mcp_without_the_mcp_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a))
    with pytest.raises(MMDemoError, match=r"--mcp needs the mcp package: pip install 'gradio\[mcp\]==6.31.0'"):
        parse_settings(["--mcp"])


# /search_images returns no State (the page's search, which keeps one for the embedding map,
# is a separate listener): Gradio 6.31's MCP server fails on an endpoint that returns one.
def test_search_images_by_text_through_mcp(mcp_app):
    result = with_session(mcp_app[1], lambda s: s.call_tool(
        "search_images", {"query": "a red diamond", "k": 2, "files": []}))
    assert not result.isError, text_of(result)


def test_each_mcp_session_keeps_its_own_things(mcp_app, session_cache):
    """Gradio's MCP server calls queued tools through one gradio_client shared by every
    agent, forwarding each agent's HTTP headers (gradio 6.31 mcp.py: client.submit(...,
    headers=request_headers)); the streamable-HTTP transport's mcp-session-id header then
    keeps agents apart (mmdemo/sessions.py), as browser sessions are. Simulated here with
    two clients of one session hash each sending its own id: the gallery one searched (its
    embedding map) is not the other's. Heads and training jobs use the same key."""
    from gradio_client import Client, handle_file

    from mmdemo.sessions import session_of
    from mmdemo.tasks.image import default_gallery_files
    from tests.helpers.outputs import plotly_traces

    class Request:
        session_hash, headers = "shared", {"mcp-session-id": "abc"}

    assert session_of(Request()) == "mcp:abc" and session_of(None) == "local"
    folder = default_gallery_files(session_cache)
    two = [handle_file(str(p)) for p in sorted(folder.glob("*.png"))[:2]]
    agents = [Client(mcp_app[1], verbose=False, headers={"mcp-session-id": sid}) for sid in ("agent-a", "agent-b")]
    agents[1].session_hash = agents[0].session_hash  # one shared client, as Gradio's MCP server has

    def points(client) -> int:
        plot = client.predict("a red diamond", 2, api_name="/embedding_map")
        return sum(len(t["x"]) for t in plotly_traces(plot) if t["name"] != "query")

    agents[0].predict("a red diamond", 2, two, api_name="/search_images")
    assert points(agents[0]) == 2  # its own upload
    assert points(agents[1]) > 2  # the example gallery: not the other agent's files
