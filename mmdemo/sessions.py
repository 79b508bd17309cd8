"""Who sent a request: the one key per browser tab, API client or MCP session under which
the app keeps what is theirs (anonymous heads, a training job, the gallery last searched).

Gradio's ``session_hash`` is per browser tab or gradio_client ``Client``. Every MCP call,
though, reaches the app through one gradio_client that Gradio's MCP server shares among
all agents (gradio 6.31 ``mcp.py``); it forwards each agent's own HTTP headers, among them
the ``mcp-session-id`` the streamable-HTTP transport gives each session, which keeps
agents apart.
"""

from __future__ import annotations

MCP_SESSION_HEADER = "mcp-session-id"


def session_of(request) -> str:
    """The sender's session key (``request``: Gradio's, duck-typed; None: a local call)."""
    headers = getattr(request, "headers", None)
    try:
        mcp = headers.get(MCP_SESSION_HEADER) if headers is not None else None
    except AttributeError:
        mcp = None
    if mcp:
        return f"mcp:{mcp}"
    return getattr(request, "session_hash", None) or "local"
