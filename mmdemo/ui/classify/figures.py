"""The Classify tab's charts (plotly), from task results only: no model, no math."""

from __future__ import annotations

from mmdemo.tasks import classify as tasks


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
                        subplot_titles=(titles[e["type"]], "Gate of each image patch" if e["type"] == "gates"
                                        else "Attention over image patches") if grid else None)
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
