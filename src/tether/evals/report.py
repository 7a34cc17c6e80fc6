"""A self-contained HTML report of evaluation runs: plots drawn as inline SVG, no script,
no font or style from anywhere but the file itself."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from tether.evals.metrics import estimate
from tether.evals.store import Run, SampleResult, decided

_COLOURS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "timeout": "#ef6c00",
    "out of memory": "#6a1b9a",
    "syntax error": "#ad1457",
    "sandbox violation": "#000000",
    "too long for the context": "#5d4037",
    "blocked by policy": "#455a64",
}
_SERIES = ("#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse}
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
.grid rect{stroke:#fff;stroke-width:1}.legend span{display:inline-block;margin-right:1em}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}
"""


def render_report(runs: Sequence[Run], results: dict[str, list[SampleResult]]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>tether evaluation report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>tether evaluation report</h1>",
        f"<p>{len(runs)} runs; made {html.escape(time.strftime('%Y-%m-%d %H:%M %z'))}.</p>",
        _runs_table(runs, results),
        "<h2>pass@1 per suite over runs</h2>",
        _trend(runs, results),
        "<h2>Outcome of each task</h2>",
        _legend(),
        *(_grid(run, results[run.id]) for run in runs),
        "<h2>Time to run each sample's tests</h2>",
        _histogram([r.duration_s for rs in results.values() for r in rs], "seconds"),
    ]
    # A sample whose tests did not run to the end (a syntax error, a time limit) has no
    # coverage: null, not a share, and left out of the plot.
    coverage = [
        float(share)
        for rs in results.values()
        for r in rs
        if r.extra
        and isinstance(share := r.extra.get("line_coverage"), int | float)
        and not isinstance(share, bool)
    ]
    if coverage:
        parts += ["<h2>Line coverage of generated code</h2>", _histogram(coverage, "share")]
    parts.append("</body></html>")
    return "\n".join(parts)


def _runs_table(runs: Sequence[Run], results: dict[str, list[SampleResult]]) -> str:
    rows = ["<table><tr><th>run</th><th>suite</th><th>model</th><th>samples</th>"
            "<th>pass@1 (95% CI)</th><th>status</th></tr>"]  # fmt: skip
    for run in runs:
        est = estimate(decided(run, results[run.id]), 1)
        model = run.manifest.get("engine", {}).get("model") or run.manifest.get("source", "")
        shown = "-" if est is None else f"{est.value:.3f} ({est.low:.3f}-{est.high:.3f})"
        rows.append(
            f"<tr><td>{html.escape(run.id)}</td><td>{html.escape(run.suite)}</td>"
            f"<td>{html.escape(str(model))}</td><td>{len(results[run.id])}</td>"
            f"<td>{shown}</td>"
            f"<td>{html.escape(run.status)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _trend(runs: Sequence[Run], results: dict[str, list[SampleResult]]) -> str:
    width, height, pad = 640, 240, 40
    suites = sorted({run.suite for run in runs})
    count = max(len(runs) - 1, 1)
    shapes = [
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
        "stroke='#999'/>",
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' stroke='#999'/>",
        f"<text x='4' y='{pad + 4}'>1.0</text><text x='4' y='{height - pad + 4}'>0.0</text>",
    ]

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * i / count

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v

    for colour, suite in zip(_SERIES * 4, suites, strict=False):
        points = []
        for i, run in enumerate(runs):
            if run.suite != suite:
                continue
            est = estimate(decided(run, results[run.id]), 1)
            if est is None:  # no task scored: no point, rather than one at 0
                continue
            points.append((x(i), y(est.value)))
            shapes.append(
                f"<line x1='{x(i):.1f}' y1='{y(est.low):.1f}' x2='{x(i):.1f}' "
                f"y2='{y(est.high):.1f}' stroke='{colour}' stroke-opacity='.5'/>"
                f"<circle cx='{x(i):.1f}' cy='{y(est.value):.1f}' r='3' fill='{colour}'>"
                f"<title>{html.escape(run.id)}: {est.value:.3f}</title></circle>"
            )
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            shapes.append(f"<polyline points='{path}' fill='none' stroke='{colour}'/>")
    legend = "".join(
        f"<span><i style='background:{c}'></i>{html.escape(s)}</span>"
        for c, s in zip(_SERIES * 4, suites, strict=False)
    )
    return (
        f"<svg role='img' aria-label='pass@1 per suite over runs' width='{width}' "
        f"height='{height}'>{''.join(shapes)}</svg><div class='legend'>{legend}</div>"
    )


def _legend() -> str:
    return (
        "<div class='legend'>"
        + "".join(
            f"<span><i style='background:{c}'></i>{html.escape(s)}</span>"
            for s, c in _COLOURS.items()
        )
        + "</div>"
    )


def _grid(run: Run, results: list[SampleResult]) -> str:
    size, per_row = 10, 60
    by_task: dict[str, str] = {}
    for result in results:  # a task is as good as its best sample
        if by_task.get(result.task_id) != "passed":
            by_task[result.task_id] = result.status
    cells = []
    for i, (task, status) in enumerate(sorted(by_task.items())):
        colour = _COLOURS.get(status, "#999")
        cells.append(
            f"<rect x='{(i % per_row) * size}' y='{(i // per_row) * size}' width='{size}' "
            f"height='{size}' fill='{colour}'><title>{html.escape(task)}: "
            f"{html.escape(status)}</title></rect>"
        )
    rows = (len(by_task) + per_row - 1) // per_row or 1
    return (
        f"<h3>{html.escape(run.id)} ({html.escape(run.suite)})</h3>"
        f"<svg class='grid' role='img' aria-label='outcome per task of {html.escape(run.id)}' "
        f"width='{per_row * size}' height='{rows * size}'>{''.join(cells)}</svg>"
    )


def _histogram(values: list[float], unit: str, bins: int = 20) -> str:
    if not values:
        return "<p>no samples</p>"
    width, height, pad = 640, 180, 30
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    top = max(counts)
    bar = (width - 2 * pad) / bins
    shapes = [
        f"<rect x='{pad + i * bar:.1f}' y='{height - pad - (height - 2 * pad) * c / top:.1f}' "
        f"width='{bar - 1:.1f}' height='{(height - 2 * pad) * c / top:.1f}' fill='#1565c0'>"
        f"<title>{low + i * span / bins:.3g}-{low + (i + 1) * span / bins:.3g} {unit}: {c}"
        "</title></rect>"
        for i, c in enumerate(counts)
    ]
    labels = (
        f"<text x='{pad}' y='{height - 8}'>{low:.3g} {unit}</text>"
        f"<text x='{width - pad - 60}' y='{height - 8}'>{high:.3g} {unit}</text>"
    )
    return (
        f"<svg role='img' aria-label='histogram' width='{width}' height='{height}'>"
        f"{''.join(shapes)}{labels}</svg>"
    )
