"""GET /: a small page for a human who opens the exporter in a browser."""

from __future__ import annotations

from html import escape


def landing_page(version: str, totals: dict[str, int], pending: int, store_up: bool) -> str:
    rows = "\n".join(
        f"<tr><td>{escape(kind)}</td><td>{count}</td></tr>"
        for kind, count in sorted(totals.items())
    )
    state = "state store up" if store_up else "state store down: counting goes on, timing paused"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cloudmailin-exporter</title></head>
<body>
<h1>cloudmailin-exporter {escape(version)}</h1>
<p>CloudMailin status event webhooks in, Prometheus metrics out.</p>
<ul>
<li><a href="metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="healthz">/healthz</a>: liveness</li>
<li><a href="readyz">/readyz</a>: readiness</li>
<li>State store: {escape(state)}</li>
<li>POST /events: the webhook URL to give CloudMailin</li>
</ul>
<p>Pending messages: {pending}</p>
<h2>Accepted events since start</h2>
<table><tr><th>kind</th><th>events</th></tr>
{rows}
</table>
</body></html>
"""
