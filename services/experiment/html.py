"""The experiment report as HTML: one self-contained page (inline CSS and SVG, nothing fetched)
for the CLI, and the same body for the dashboard's Experiments page.

Charts: pass@1 per arm per inference step; step-1 pass@1 against teacher-answered tasks; and
against teacher cost (dollars when the teacher was paid, else its billed-size tokens). Every
point carries its 95% interval.
"""

from __future__ import annotations

from html import escape

from services.experiment.report import ExperimentReport, PointRow
from services.experiment.stats import P_BOOTSTRAP_FLOOR
from shared.enums import ExperimentArm

COLOURS = {
    ExperimentArm.BASE: "#6b7280",
    ExperimentArm.STAND: "#d97706",
    ExperimentArm.PERSD: "#2563eb",
    ExperimentArm.PERSD_REFINE: "#059669",
    ExperimentArm.PERSD_COMBINED: "#7c3aed",
}
STYLE = """
.xr{font:14px/1.45 system-ui,sans-serif;color:#111}
.xr table{border-collapse:collapse;margin:8px 0 18px}
.xr th,.xr td{border:1px solid #ddd;padding:3px 8px;text-align:right}
.xr th:first-child,.xr td:first-child{text-align:left}
.xr .charts{display:flex;flex-wrap:wrap;gap:18px}
.xr figure{margin:0}.xr figcaption{font-weight:600;margin-bottom:4px}
.xr .sig{font-weight:600}
"""

Series = list[tuple[float, float, float, float]]  # x, mean, low, high


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def chart(
    series: list[tuple[str, str, Series]],
    *,
    x_label: str,
    y_label: str = "pass@1 (%)",
    width: int = 460,
    height: int = 300,
    categorical: list[str] | None = None,
) -> str:
    """Lines with interval whiskers; ``series`` = (name, colour, points)."""
    left, right, top, bottom = 52, 150, 14, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p[0] for _, _, pts in series for p in pts] or [0.0, 1.0]
    x_min, x_max = min(xs), max(xs)
    if x_max == x_min:
        x_min, x_max = x_min - 1, x_max + 1
    y_max = max([p[3] for _, _, pts in series for p in pts] + [0.1])
    y_max = min(1.0, y_max * 1.1 + 0.02)

    def sx(x: float) -> float:
        return left + (x - x_min) / (x_max - x_min) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none"'
        ' stroke="#ccc"/>',
    ]
    for i in range(5):
        y = y_max * i / 4
        out.append(
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_pct(y)}</text>"
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"'
            ' stroke="#eee"/>'
        )
    drawn_to = -1e9  # right edge of the last tick label drawn
    for x in sorted(set(xs)):
        text = categorical[int(x)] if categorical else f"{x:g}"
        half = 3.5 * len(text) + 3  # about half an 11px label, plus a gap
        if sx(x) - half < drawn_to:
            continue  # would overprint its neighbour (171 next to 180); the dot's title has it
        drawn_to = sx(x) + half
        out.append(
            f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" font-size="11"'
            f' text-anchor="middle">{escape(text)}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="12"'
        f' text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2}" font-size="12" text-anchor="middle"'
        f' transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    for n, (name, colour, pts) in enumerate(series):
        pts = sorted(pts)
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(m):.1f}" for x, m, _, _ in pts)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, m, lo, hi in pts:
            out.append(
                f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{sy(lo):.1f}" y2="{sy(hi):.1f}"'
                f' stroke="{colour}" stroke-width="1.5"/>'
                f'<circle cx="{sx(x):.1f}" cy="{sy(m):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(name)}: {_pct(m)}% [{_pct(lo)}, {_pct(hi)}]</title></circle>"
            )
        ly = top + 12 + 16 * n
        out.append(
            f'<rect x="{left + plot_w + 10}" y="{ly - 9}" width="10" height="10"'
            f' fill="{colour}"/><text x="{left + plot_w + 24}" y="{ly}" font-size="11">'
            f"{escape(name)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _name(p: PointRow) -> str:
    return "base" if p.arm == ExperimentArm.BASE else f"{p.arm.value}@{p.count}"


def _cost_axis(report: ExperimentReport) -> tuple[str, bool]:
    paid = any(p.spend.cost_usd > 0 for p in report.points)
    return ("teacher cost (USD)" if paid else "teacher tokens (billed-size)"), paid


def charts(report: ExperimentReport) -> str:
    points = report.points
    steps = report.config.steps
    largest = {p.arm: max(q.count for q in points if q.arm == p.arm) for p in points}
    per_step = [
        (
            _name(p),
            # an arm's smaller counts in a lighter shade of its colour (8-digit hex: alpha)
            COLOURS[p.arm] + ("" if p.count == largest[p.arm] else "80"),
            [(f.step, f.mean, f.low, f.high) for f in p.pass_at_1],
        )
        for p in points
    ]
    base = next((p for p in points if p.arm == ExperimentArm.BASE), None)
    by_arm: dict[ExperimentArm, list[PointRow]] = {}
    for p in points:
        if p.arm != ExperimentArm.BASE:
            by_arm.setdefault(p.arm, []).append(p)
    cost_label, paid = _cost_axis(report)

    def line(key) -> list[tuple[str, str, Series]]:
        out = []
        for arm, rows in by_arm.items():
            out.append(
                (
                    arm.value,
                    COLOURS[arm],
                    [
                        (key(p), p.pass_at_1[0].mean, p.pass_at_1[0].low, p.pass_at_1[0].high)
                        for p in rows
                    ],
                )
            )
        if base is not None:
            f = base.pass_at_1[0]
            out.append(("base", COLOURS[ExperimentArm.BASE], [(0.0, f.mean, f.low, f.high)]))
        return out

    figures = [
        ("pass@1 per inference step", chart(per_step, x_label=f"step (1..{steps})")),
        (
            "step-1 pass@1 vs teacher-answered tasks",
            chart(line(lambda p: p.tasks_used), x_label="tasks"),
        ),
        (
            f"step-1 pass@1 vs {cost_label}",
            chart(
                line(lambda p: p.spend.cost_usd if paid else p.spend.tokens_equivalent),
                x_label=cost_label,
            ),
        ),
    ]
    return (
        '<div class="charts">'
        + "".join(
            f"<figure><figcaption>{escape(title)}</figcaption>{svg}</figure>"
            for title, svg in figures
        )
        + "</div>"
    )


def _ci(f) -> str:
    return f"{_pct(f.mean)} <small>[{_pct(f.low)}, {_pct(f.high)}]</small>"


def _p_bootstrap(p: float) -> str:
    return f"&lt;{P_BOOTSTRAP_FLOOR:.2g}" if p < P_BOOTSTRAP_FLOOR else f"{p:.3g}"


def tables(report: ExperimentReport) -> str:
    steps = report.config.steps
    head = "".join(f"<th>step {s} pass@1 % [95% CI]</th>" for s in range(1, steps + 1))
    rows = []
    for p in report.points:
        rows.append(
            f"<tr><td>{escape(_name(p))}</td><td>{len(p.seeds)}</td>"
            f"<td>{p.tasks_used:g}{' (capped)' if p.capped else ''}</td>"
            f"<td>{p.examples_used:g}</td>"
            + "".join(f"<td>{_ci(f)}</td>" for f in p.pass_at_1)
            + f"<td>{p.spend.tokens_equivalent:,}</td><td>${p.spend.cost_usd:.4f}</td>"
            f"<td>{'' if p.gain_points is None else f'{p.gain_points:+.1f}'}</td>"
            f"<td>{'' if p.tokens_per_point is None else f'{p.tokens_per_point:,.0f}'}</td>"
            f"<td>{p.train_s:.0f}</td><td>{p.eval_s:.0f}</td></tr>"
        )
    points = (
        '<table id="points"><tr><th>arm@tasks</th><th>seeds</th><th>tasks</th><th>examples</th>'
        f"{head}<th>teacher tokens</th><th>teacher USD</th><th>gain (pts)</th>"
        "<th>tokens / pt</th><th>train s</th><th>eval s</th></tr>" + "".join(rows) + "</table>"
    )
    comp = []
    for c in report.comparisons:
        sig = ' class="sig"' if c.low > 0 or c.high < 0 else ""
        comp.append(
            f"<tr{sig}><td>{escape(c.a)} vs {escape(c.b)}</td><td>{escape(c.label)}</td>"
            f"<td>{c.step}</td>"
            f"<td>{100 * c.diff:+.1f} <small>[{100 * c.low:+.1f}, {100 * c.high:+.1f}]</small>"
            f"</td><td>{_p_bootstrap(c.p_bootstrap)}</td><td>{c.p_mcnemar:.3g}</td>"
            f"<td>{c.wins}/{c.losses}</td></tr>"
        )
    comparisons = (
        '<table id="comparisons"><tr><th>comparison</th><th>kind</th><th>step</th><th>diff (pts) [95% CI]'
        "</th><th>p (paired bootstrap)</th><th>p (McNemar)</th><th>wins/losses</th></tr>"
        + "".join(comp)
        + "</table>"
    )
    return points + "<h3>Paired comparisons (same held-out tasks)</h3>" + comparisons


def body(report: ExperimentReport) -> str:
    t = report.traffic
    c = report.config
    statuses = ", ".join(f"{k} {v}" for k, v in t.statuses.items())
    return (
        f'<div class="xr"><p>{escape(report.status.value)} · student <code>'
        f"{escape(c.student_model)}</code> · teacher {escape(c.teacher_backend)} · pools"
        f" {escape(c.pools.distill)}/{escape(c.pools.heldout)} (distillation {t.tasks} tasks:"
        f" {escape(statuses)}; held-out {report.heldout_tasks} tasks) · seeds {c.seeds} ·"
        f" wall {report.wall_s / 60:.1f} min (traffic {t.wall_s / 60:.1f}) · CPU"
        f" {report.cpu_s / 60:.1f} min in arm points</p>"
        + (f'<p class="error">{escape(report.error)}</p>' if report.error else "")
        + (
            '<p class="error">the traffic was answered by more than one model ('
            + escape(", ".join(t.attempt_models))
            + "): an adapter went live while it flowed</p>"
            if len(t.attempt_models) > 1
            else ""
        )
        + tables(report)
        + charts(report)
        + "</div>"
    )


def page(report: ExperimentReport) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>persd experiment {escape(report.name)}</title><style>{STYLE}</style></head>"
        f"<body><h1>persd experiment {escape(report.name)}</h1>{body(report)}</body></html>\n"
    )
