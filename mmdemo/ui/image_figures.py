"""The Image tab's figures (plotly): ranked captions, the similarity heatmap, the embedding map."""

from __future__ import annotations

import numpy as np

from mmdemo.tasks import image as tasks

RANK_BARS = 15
AXIS_LABEL_CHARS = 32


def _short(text: str, n: int = AXIS_LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"



def rank_figure(res: tasks.RankResult):
    """The best candidates as horizontal bars of probability, best on top."""
    import plotly.graph_objects as go

    top = res.ranked[:RANK_BARS]
    fig = go.Figure(go.Bar(
        x=[r["score"] for r in top], y=[_short(r["label"], 48) for r in top], orientation="h",
        text=[f"{r['score']:.1%}" for r in top], textposition="auto",
        customdata=[[r["label"], r["similarity"]] for r in top],
        hovertemplate="%{customdata[0]}<br>probability %{x:.1%}<br>cosine %{customdata[1]:.3f}<extra></extra>"))
    shown = f"top {len(top)} of {len(res.ranked)}" if len(res.ranked) > len(top) else f"{len(top)}"
    fig.update_layout(title=f"Ranked captions ({shown} candidates)", xaxis=dict(title="probability", tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), height=max(260, 40 + 26 * len(top)),
                      margin=dict(l=20, r=20, t=50, b=40))
    return fig


def heatmap_figure(h: tasks.Heatmap):
    """Images (rows) x texts (columns), cosine similarity written in each cell."""
    import plotly.graph_objects as go

    sim = np.asarray(h.similarity, np.float64)
    fig = go.Figure(go.Heatmap(
        z=sim, x=[f"{j + 1}. {_short(t)}" for j, t in enumerate(h.texts)],
        y=[f"{i + 1}. {_short(n, 24)}" for i, n in enumerate(h.images)],
        customdata=[[[n, t] for t in h.texts] for n in h.images], colorscale="Viridis",
        colorbar=dict(title="cosine"), texttemplate="%{z:.2f}" if sim.size <= 400 else None,
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>cosine %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Similarity heatmap: {len(h.images)} image(s) x {len(h.texts)} text(s)",
                      yaxis=dict(autorange="reversed"), xaxis=dict(tickangle=-35),
                      height=max(380, 240 + 50 * len(h.images)), margin=dict(l=20, r=20, t=50, b=40))
    return fig


def map_figure(m: tasks.EmbeddingMap, hits: list[str]):
    """The gallery in 2-D (PCA); the query as a star, its top results ringed."""
    captions = m.captions
    import plotly.graph_objects as go

    pts = np.asarray(m.points, np.float64)
    hit = set(hits)
    is_hit = np.array([label in hit for label in m.labels], bool)
    fig = go.Figure()
    for mask, name, style in ((~is_hit, "gallery image", dict(size=9, color="#9aa5b1")),
                              (is_hit, "top result", dict(size=12, color="#1f77b4", line=dict(width=2, color="#ff7f0e")))):
        if not mask.any():
            continue
        idx = np.flatnonzero(mask)
        fig.add_trace(go.Scatter(
            x=pts[idx, 0], y=pts[idx, 1], mode="markers", name=name, marker=style,
            customdata=[[m.labels[i], captions[i] if i < len(captions) else ""] for i in idx],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<extra></extra>"))
    if m.query_point is not None:
        q = np.asarray(m.query_point, np.float64)
        fig.add_trace(go.Scatter(x=[q[0]], y=[q[1]], mode="markers+text", name="query",
                                 text=[_short(m.query_label, 40)], textposition="top center",
                                 marker=dict(symbol="star", size=20, color="#d62728", line=dict(width=1, color="black")),
                                 customdata=[m.query_label], hovertemplate="query: %{customdata}<extra></extra>"))
    ev = list(m.explained_variance) + [0.0, 0.0]
    shown = (f"{len(m.labels):,} of {m.total:,} images (a seeded sample and the best matches)" if m.sampled
             else f"{len(m.labels)} image(s)")
    fig.update_layout(title=f"Embedding map: {shown}, PCA of the image embeddings",
                      xaxis_title=f"PC1 ({ev[0]:.0%} of variance)", yaxis_title=f"PC2 ({ev[1]:.0%} of variance)",
                      height=460, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.18))
    return fig
