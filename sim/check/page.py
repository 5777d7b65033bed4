"""A self-contained HTML page of a history's timeline; hovering an op shows it.

Inline SVG, CSS and a few lines of script, nothing fetched: the page can be
attached to a bug report or opened from a CI artifact. Each bar carries an
SVG ``<title>`` (a native tooltip, works without script) and its details in
data attributes that the script shows in a side panel.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence

from sim.check.result import CheckResult, render_text
from sim.check.timeline import layout
from sim.history import Operation, describe_call, operation_to_dict

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
svg { border: 1px solid #ddd; background: #fff; }
rect.op { fill: #7f9fbf; stroke: #7f9fbf; }
rect.op.info { fill-opacity: .35; stroke-dasharray: 4 2; }
rect.op.cx { fill: #d62728; stroke: #000; stroke-width: 1.2; }
rect.op:hover { stroke: #000; stroke-width: 2; }
text.lane { font-size: 11px; fill: #444; }
text.label { font-size: 10px; fill: #8b0000; pointer-events: none; }
#details { position: sticky; top: 0; background: #fffbe6; border: 1px solid #e6d98c;
           padding: .6em; min-height: 2.5em; font-family: monospace; white-space: pre-wrap; }
"""

_SCRIPT = """
const panel = document.getElementById('details');
document.querySelectorAll('rect.op').forEach(r => {
  r.addEventListener('mouseenter', () => { panel.textContent = r.dataset.details; });
});
"""


def render_page(ops: Sequence[Operation], result: CheckResult | None, *, max_ops: int = 300) -> str:
    """The page as a string."""
    tl = layout(ops, result, max_ops=max_ops)
    lane_h, left, width = 26, 90, 1100
    height = lane_h * max(len(tl.lanes), 1) + 40
    span = max(tl.end - tl.start, 1e-9)

    def x(t: float) -> float:
        return left + (t - tl.start) / span * (width - left - 10)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i, client in enumerate(tl.lanes):
        parts.append(f'<text class="lane" x="4" y="{i * lane_h + 30}">client {client}</text>')
    for bar in tl.bars:
        op = bar.op
        details = json.dumps({"line": op.line, **operation_to_dict(op)}, indent=1)
        summary = op.describe() + (" [counterexample]" if bar.highlighted else "")
        classes = "op" + (" info" if bar.open_ended else "") + (" cx" if bar.highlighted else "")
        x0, x1 = x(bar.start), x(bar.end)
        y = bar.lane * lane_h + 18
        parts.append(
            f'<rect class="{classes}" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 2):.1f}" height="16" '
            f'data-details="{html.escape(summary + chr(10) + details)}">'
            f"<title>{html.escape(summary)}</title></rect>"
        )
        if bar.highlighted:
            parts.append(f'<text class="label" x="{x0:.1f}" y="{y - 2}">{html.escape(describe_call(op))}</text>')
    parts.append("</svg>")
    report = render_text(result) if result is not None else ""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(tl.title)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(tl.title)}</h1>",
            '<div id="details">hover over an operation to see it</div>',
            *parts,
            f"<pre>{html.escape(report)}</pre>",
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )


def write_page(
    ops: Sequence[Operation], result: CheckResult | None, path: str | os.PathLike[str], *, max_ops: int = 300
) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_page(ops, result, max_ops=max_ops))
