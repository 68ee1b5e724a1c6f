#!/usr/bin/env python3
"""A static HTML preview of deploy/grafana/dashboards/tron-actors.json, for a screenshot where
Grafana cannot run (docs/img/dashboard.png was made this way).

It asks a Prometheus that scraped a running daemon for every panel's queries over the last
--minutes (the same PromQL Grafana would send, /api/v1/query_range), and draws each panel in
the dashboard's grid: a line per series, or the last value for stat panels. Not Grafana: no
units beyond s, no thresholds but the dead letters' colour.

    python3 deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 --out /tmp/dash.html
    chromium --headless --screenshot=docs/img/dashboard.png --window-size=1600,1800 /tmp/dash.html
"""

import argparse
import html
import json
import time
import urllib.parse
import urllib.request

COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff"]
CELL_W, CELL_H = 66, 34  # px per grid column (24 across) and per grid row


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=10) as r:
        body = json.load(r)
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt or "{{__name__}}"
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return out or "value"


def fmt_value(v, unit):
    if v != v:  # NaN
        return "-"
    if unit == "s":
        return f"{v:.3g} s" if v < 100 else f"{v:,.0f} s"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def svg_lines(series, w, h, unit):
    points = [(t, v) for s in series for t, v in s["values"]]
    if not points:
        return '<div class="empty">no data</div>'
    t0 = min(t for t, _ in points)
    t1 = max(t for t, _ in points)
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = 40
    parts = [f'<svg width="{w}" height="{h}">']
    for frac in (0, 0.5, 1):
        y = h - 4 - frac * (h - 8)
        parts.append(f'<line x1="{pad}" x2="{w}" y1="{y}" y2="{y}" class="grid"/>')
        parts.append(f'<text x="0" y="{y + 4}" class="axis">{html.escape(fmt_value(lo + frac * (hi - lo), unit))}</text>')
    for i, s in enumerate(series):
        coords = " ".join(
            f"{pad + (t - t0) / max(t1 - t0, 1) * (w - pad):.1f},{h - 4 - (v - lo) / (hi - lo) * (h - 8):.1f}"
            for t, v in s["values"])
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.6"/>')
    parts.append("</svg>")
    return "".join(parts)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--dashboard", default="deploy/grafana/dashboards/tron-actors.json")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--out", default="dashboard.html")
    args = p.parse_args()
    dashboard = json.load(open(args.dashboard))
    end = time.time()
    start = end - args.minutes * 60
    step = max(int(args.minutes * 60 / 120), 1)
    cells = []
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        series = []
        for target in panel["targets"]:
            for r in query_range(args.prometheus, target["expr"], start, end, step):
                values = [(float(t), float(v)) for t, v in r["values"]]
                series.append({"name": legend(target.get("legendFormat"), r["metric"]), "values": values})
        w, h = g["w"] * CELL_W - 16, g["h"] * CELL_H - 64
        if panel["type"] == "stat":
            last = series[0]["values"][-1][1] if series and series[0]["values"] else float("nan")
            red = panel["title"] == "Dead letters" and last >= 1
            shown = fmt_value(last, unit)
            if panel.get("options", {}).get("textMode") == "name":
                shown = ", ".join(s["name"] for s in series) or "-"
            body = f'<div class="stat{" red" if red else ""}">{html.escape(shown)}</div>'
        else:
            keys = "".join(
                f'<span><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{html.escape(s["name"])} '
                f'<b>{html.escape(fmt_value(s["values"][-1][1], unit)) if s["values"] else "-"}</b></span>'
                for i, s in enumerate(series))
            body = svg_lines(series, w, h - 22, unit) + f'<div class="keys">{keys}</div>'
        cells.append(
            f'<div class="panel" style="left:{g["x"] * CELL_W}px;top:{g["y"] * CELL_H + 40}px;'
            f'width:{g["w"] * CELL_W - 8}px;height:{g["h"] * CELL_H - 8}px">'
            f'<div class="title">{html.escape(panel["title"])}</div>{body}</div>')
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px sans-serif; margin:8px; }}
.head {{ font-size:15px; height:32px; }} .head small {{ color:#8e8e8e; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:6px; box-sizing:border-box; overflow:hidden; }}
.title {{ font-weight:bold; margin-bottom:4px; }}
.stat {{ font-size:36px; color:#73bf69; text-align:center; margin-top:40px; }} .stat.red {{ color:#f2495c; }}
.grid {{ stroke:#2c3235; }} .axis {{ fill:#8e8e8e; font-size:10px; }}
.keys span {{ margin-right:10px; white-space:nowrap; }} .keys i {{ display:inline-block; width:10px; height:3px; margin-right:4px; vertical-align:middle; }}
.empty {{ color:#8e8e8e; margin-top:40px; text-align:center; }}
</style></head><body><div class="head">{html.escape(dashboard["title"])} <small>preview: the dashboard's
queries on Prometheus, last {args.minutes:g} min to {stamp}; drawn by deploy/grafana/preview.py, not by Grafana</small></div>
{"".join(cells)}</body></html>"""
    open(args.out, "w").write(page)


if __name__ == "__main__":
    main()
