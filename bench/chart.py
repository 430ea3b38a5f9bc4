"""A run's headline figures as one SVG: a bar panel per measure, a row per server.

Written as text: four panels of bars need no plotting library.
"""

from xml.sax.saxutils import escape

from bench.servers import FUNCTION, PROTOCOL_VARIANTS, STACK_VARIANTS

LABEL_WIDTH = 190
PANEL_WIDTH = 180
GAP = 24
ROW = 22
BAR = 14
TOP = 80
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"
OURS, OTHERS = "#1a73e8", "#9aa0a6"
# (title, unit, figure of a run for one server or None, better when higher?)
PANELS = (
    ("one-flower requests/s", "", lambda r, n: r["warm"][n]["rps"], True),
    ("p99 latency", " ms", lambda r, n: r["warm"][n]["p99_ms"], False),
    ("cold start", " s", lambda r, n: r["cold_start"].get(n, {}).get("median_s"), False),
    ("memory: RSS, all processes", " MiB", lambda r, n: r["memory_mib"][n]["rss"], False),
)


def draw(r: dict) -> str:
    """The SVG text for run results `r`."""
    names = [n for n in r["warm"] if n not in STACK_VARIANTS + PROTOCOL_VARIANTS]
    width = LABEL_WIDTH + len(PANELS) * (PANEL_WIDTH + GAP)
    height = TOP + len(names) * ROW + 30
    conns = r["config"]["connections"]
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' {FONT} font-size='12'>",
           f"<rect width='{width}' height='{height}' fill='white'/>",
           "<text x='8' y='20' font-size='15' font-weight='bold'>iris-predict beside its "
           "references and peers: one run of make bench</text>",
           f"<text x='8' y='38' fill='#5f6368'>{conns} connections, one worker each; "
           f"medians of interleaved rounds; {escape(r['machine']['cpu'])}, "
           f"{r['machine']['cpus']} CPUs</text>"]
    for i, name in enumerate(names):
        y = TOP + i * ROW
        weight = " font-weight='bold'" if name == FUNCTION else ""
        out.append(f"<text x='{LABEL_WIDTH - 8}' y='{y + BAR - 3}' text-anchor='end'{weight}>"
                   f"{escape(name)}</text>")
    for p, (title, unit, figure, higher) in enumerate(PANELS):
        x0 = LABEL_WIDTH + p * (PANEL_WIDTH + GAP)
        values = {n: figure(r, n) for n in names}
        top = max((v for v in values.values() if v is not None), default=1) or 1
        hint = "higher is better" if higher else "lower is better"
        out.append(f"<text x='{x0}' y='{TOP - 24}' font-weight='bold'>{escape(title)}</text>")
        out.append(f"<text x='{x0}' y='{TOP - 9}' fill='#5f6368'>{hint}</text>")
        for i, name in enumerate(names):
            y, value = TOP + i * ROW, values[name]
            if value is None:
                out.append(f"<text x='{x0}' y='{y + BAR - 3}' fill='#5f6368'>not measured</text>")
                continue
            length = max(1.0, value / top * (PANEL_WIDTH - 60))
            color = OURS if name == FUNCTION else OTHERS
            out.append(f"<rect x='{x0}' y='{y}' width='{length:.1f}' height='{BAR}' "
                       f"fill='{color}'/>")
            out.append(f"<text x='{x0 + length + 4:.1f}' y='{y + BAR - 3}'>"
                       f"{_number(value)}{unit}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
