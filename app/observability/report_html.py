"""`switchboard report --html FILE`: one self-contained page (inline SVG and CSS, no scripts, nothing
fetched from anywhere), so it opens the same on a laptop, in CI artifacts or attached to a ticket."""

from __future__ import annotations

from html import escape

from app.observability.report import MAIN_STAGES, Report, render_text

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")
W, H, PAD = 720, 260, 48


def _bars(title: str, rows: list[tuple[str, list[float]]], series: list[str], unit: str) -> str:
    """Horizontal grouped bars: one group per row, one bar per series."""
    top = max((v for _, values in rows for v in values), default=0.0) or 1.0
    band = 14 * len(series) + 10
    height = PAD + band * len(rows) + 30
    left = 190
    parts = [
        (
            f'<svg role="img" aria-label="{escape(title)}" width="{W}" height="{height}" '
            f'viewBox="0 0 {W} {height}" xmlns="http://www.w3.org/2000/svg">'
        ),
        f'<text x="0" y="18" class="t">{escape(title)}</text>',
    ]
    for i, (label, values) in enumerate(rows):
        y = PAD + i * band
        parts.append(
            f'<text x="{left - 8}" y="{y + band / 2}" text-anchor="end" class="l">{escape(label)}</text>'
        )
        for j, value in enumerate(values):
            width = (W - left - 90) * value / top
            parts.append(
                f'<rect x="{left}" y="{y + j * 14}" width="{width:.1f}" height="12" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(label)} {escape(series[j])}: '
                f"{value:.4g} {unit}</title></rect>"
            )
            parts.append(
                f'<text x="{left + width + 4:.1f}" y="{y + j * 14 + 10}" class="v">{value:.3g}</text>'
            )
    parts.append(_legend(series, height - 14))
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: list[str], y: float) -> str:
    return "".join(
        f'<rect x="{PAD + i * 150}" y="{y - 9}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
        f'<text x="{PAD + i * 150 + 14}" y="{y}" class="l">{escape(name)}</text>'
        for i, name in enumerate(series)
    )


def _lines(title: str, xs: list[str], series: dict[str, list[float]], unit: str) -> str:
    """A line chart over time; x labels are the first and last moments."""
    if not xs:
        return f"<p>{escape(title)}: no data in this window.</p>"
    top = max((v for values in series.values() for v in values), default=0.0) or 1.0
    plot_w, plot_h = W - 2 * PAD, H - 2 * PAD
    n = max(1, len(xs) - 1)
    parts = [
        (
            f'<svg role="img" aria-label="{escape(title)}" width="{W}" height="{H + 20}" '
            f'viewBox="0 0 {W} {H + 20}" xmlns="http://www.w3.org/2000/svg">'
        ),
        f'<text x="0" y="18" class="t">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" class="axis"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" class="v">{top:.3g}</text>',
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" class="v">0</text>',
        f'<text x="{PAD}" y="{H - PAD + 16}" class="v">{escape(xs[0])}</text>',
        (
            f'<text x="{W - PAD}" y="{H - PAD + 16}" text-anchor="end" class="v">'
            f"{escape(xs[-1])} ({unit})</text>"
        ),
    ]
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{PAD + plot_w * k / n:.1f},{H - PAD - plot_h * v / top:.1f}" for k, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
    parts.append(_legend(list(series), H + 12))
    parts.append("</svg>")
    return "".join(parts)


def _table(report: Report) -> str:
    head = (
        "<tr><th>specialist</th><th>stage</th><th>count</th><th>p50 s</th><th>p95 s</th><th>p99 s</th></tr>"
    )
    rows = []
    for name, spec in report.by_specialist.items():
        for stage, stats in spec.stages.items():
            rows.append(
                f"<tr><td>{escape(name)}</td><td>{escape(stage)}</td><td>{stats.count}</td>"
                f"<td>{stats.p50}</td><td>{stats.p95}</td><td>{stats.p99}</td></tr>"
            )
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(report: Report) -> str:
    stages = [
        s
        for s in [*MAIN_STAGES, *sorted(k for k in report.stages if k.startswith("step."))]
        if s in report.stages
    ]
    latency = _bars(
        "Latency per stage (seconds)",
        [
            (s, [report.stages[s].p50 or 0.0, report.stages[s].p95 or 0.0, report.stages[s].p99 or 0.0])
            for s in stages
        ],
        ["p50", "p95", "p99"],
        "s",
    )
    times = [p.at.strftime("%H:%M:%S") for p in report.timeline]
    specialists = sorted({k for p in report.timeline for k in p.waiting_for_specialist})
    depth = _lines(
        "Requests waiting in queues (rebuilt from the record)",
        times,
        {
            "router": [float(p.waiting_for_router) for p in report.timeline],
            **{s: [float(p.waiting_for_specialist.get(s, 0)) for p in report.timeline] for s in specialists},
        },
        "UTC",
    )
    throughput = _lines(
        "Throughput (requests finished per second)",
        times,
        {"finished/s": [p.finished_per_s for p in report.timeline]},
        "UTC",
    )
    cost = _bars(
        "Cost per specialist (USD)",
        [(name, [spec.cost_usd]) for name, spec in report.by_specialist.items()],
        ["cost"],
        "USD",
    )
    b = report.bottleneck
    headline = (
        f"{escape(b.verdict)}: <b>{escape(b.stage)}</b>{' (' + escape(b.where) + ')' if b.where else ''} "
        f"is {b.share:.0%} of end-to-end time. {escape(b.advice)}."
        + (f" ({escape(b.because)})" if b.because else "")
        if b
        else "No finished requests."
    )
    shares = (
        _bars(
            "Where the time goes (share of end-to-end time)",
            [(k, [v]) for k, v in b.shares.items()],
            ["share"],
            "",
        )
        if b
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 980px; }}
h1 {{ font-size: 20px; }} .bn {{ font-size: 16px; padding: 8px 12px; background: #fff4e0; border-left: 4px solid #f28e2b; }}
.t {{ font: bold 13px sans-serif; }} .l {{ font: 12px sans-serif; }} .v {{ font: 11px sans-serif; fill: #555; }}
.axis {{ stroke: #999; }} table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }} td:first-child, td:nth-child(2) {{ text-align: left; }}
pre {{ background: #f6f6f6; padding: 10px; overflow-x: auto; }}
</style></head><body>
<h1>Switchboard report</h1>
<p class="bn">{headline}</p>
<pre>{escape(render_text(report))}</pre>
{shares}
{latency}
{depth}
{throughput}
{cost}
<h2>Stages per specialist</h2>
{_table(report)}
</body></html>
"""
