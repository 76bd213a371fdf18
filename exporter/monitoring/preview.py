"""A picture of a dashboard's layout filled with real data, for the README.

Grafana itself cannot run here, so this draws each panel where its gridPos
puts it, with its title and what its queries return: lines for time series
and heatmaps, the last value for stats, bars for bar gauges, rows for tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One Grafana grid unit: 24 columns across, rows of about 30 px.
COLUMN_INCHES = 0.75
ROW_INCHES = 0.32

Fetch = Callable[[str], list[dict[str, Any]]]


def _last(series: dict[str, Any]) -> float:
    values = [float(v) for _, v in series["values"]]
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else math.nan


def _label(series: dict[str, Any]) -> str:
    legend = str(series.get("legend", ""))
    metric = {k: v for k, v in series["metric"].items() if k != "__name__"}
    if legend:
        return re.sub(r"{{\s*(\w+)\s*}}", lambda m: str(metric.get(m.group(1), "")), legend)
    return ",".join(f"{v}" for v in metric.values()) or "value"


def render_preview(board: dict[str, Any], fetch: Fetch, out: Path) -> int:
    """Draw `board` into the PNG `out`; returns how many panels were drawn."""
    import matplotlib  # noqa: PLC0415 - heavy, and only the preview needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    fig = plt.figure(figsize=(24 * COLUMN_INCHES, bottom * ROW_INCHES + 0.6), dpi=80)
    fig.suptitle(board["title"], fontsize=14, x=0.01, ha="left")
    drawn = 0
    top_margin = 0.6 / (bottom * ROW_INCHES + 0.6)
    usable = 1 - top_margin
    for panel in board["panels"]:
        pos = panel["gridPos"]
        left = pos["x"] / 24
        width = pos["w"] / 24
        height = pos["h"] / bottom * usable
        y = 1 - top_margin - (pos["y"] + pos["h"]) / bottom * usable
        if panel["type"] == "row":
            fig.text(left + 0.005, y + height / 2, panel["title"], fontsize=11, weight="bold")
            continue
        ax = fig.add_axes((left + 0.006, y + 0.012, width - 0.012, height - 0.05))
        ax.set_title(panel["title"], fontsize=9, loc="left")
        results = [
            {**s, "legend": t.get("legendFormat", "")}
            for t in panel["targets"]
            for s in fetch(t["expr"])
        ]
        _draw(ax, panel["type"], results)
        drawn += 1
    fig.savefig(out)
    plt.close(fig)
    return drawn


def _draw(ax: Any, kind: str, results: list[dict[str, Any]]) -> None:
    ax.tick_params(labelsize=6)
    if not results:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if kind == "stat":
        ax.axis("off")
        value = sum(_last(s) for s in results)
        text = f"{value:.3g}" if math.isfinite(value) else "NaN"
        ax.text(0.5, 0.4, text, ha="center", va="center", fontsize=20, transform=ax.transAxes)
    elif kind == "bargauge":
        ranked = sorted(results, key=_last)[-10:]
        ax.barh([_label(s) for s in ranked], [_last(s) for s in ranked], color="tab:blue")
    elif kind == "table":
        ax.axis("off")
        rows = [_label(s) for s in results][:8]
        ax.text(0.01, 0.95, "\n".join(rows), va="top", fontsize=7, transform=ax.transAxes)
    else:
        start = min(float(s["values"][0][0]) for s in results)
        for s in results[:12]:
            xs = [float(t) - start for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ax.plot(xs, ys, linewidth=1, label=_label(s)[:24])
        ax.set_xlabel("seconds", fontsize=6)
        if len(results) > 1:
            ax.legend(fontsize=5, loc="upper left", ncol=2)
