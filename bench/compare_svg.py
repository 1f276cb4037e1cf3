#!/usr/bin/env python3
"""One SVG comparing two runs of the same jobs, processes and threads, from
their results folders' joblogs (docs/formats.md §3): throughput over time
(attempts ended per second, both runs on one chart, each from its own
start), then each run's worker timeline, one 1.5-px lane per slot, shaded
by how busy the slot was, red where an attempt failed.

    compare_svg.py OUT.svg LABEL DIR [LABEL DIR ...]

bench/bench.py calls it after case 2 (W=256) with the last good run of each
mode, so that the picture comes from the same run as the table. Standard
library only; the joblogs are streamed."""
import datetime
import json
import os
import sys

W = 1000
LEFT = 70
RIGHT = 12
COLS = 300
COLORS = ["#2c7be5", "#e8590c", "#2e9e5b", "#9b59b6"]


def ms(t):
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000


def load(d):
    rows = []
    with open(os.path.join(d, "joblog.jsonl"), encoding="utf-8") as f:
        for line in f:
            try:
                a = json.loads(line)
                s = ms(a["started_at"])
                rows.append((s, s + float(a["elapsed_ms"]), int(a["slot"]), a["outcome"] == "ok"))
            except (ValueError, KeyError, TypeError):
                continue  # a cut last line: the page says nothing of it
    t0 = min(r[0] for r in rows)
    return [(s - t0, e - t0, slot, ok) for s, e, slot, ok in rows]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def main():
    out, pairs = sys.argv[1], sys.argv[2:]
    runs = [(pairs[i], load(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    span = max(max(e for _, e, _, _ in rows) for _, rows in runs)
    # At least 100 ms: 256 workers of a 50 ms API answer in waves, and
    # finer buckets draw the waves, not the pace.
    bucket = max(span / 120, 100.0)
    nb = int(span / bucket) + 1
    x = lambda t: LEFT + t / span * (W - LEFT - RIGHT)
    rates = []
    for _, rows in runs:
        c = [0] * nb
        for _, e, _, _ in rows:
            c[min(int(e / bucket), nb - 1)] += 1
        rates.append([v / (bucket / 1000) for v in c])
    top = max(max(r) for r in rates) or 1
    mag = 10 ** len(str(int(top))) / 10
    ymax = next(m * mag for m in (1, 2, 2.5, 4, 5, 8, 10) if m * mag >= top)
    th = 200  # throughput chart height
    svg = []
    y0 = 30
    y = lambda v: y0 + th - v / ymax * th
    attempts = len(runs[0][1])
    svg.append(f'<text x="{LEFT}" y="18" class="h">Throughput: attempts ended per second '
               f'(the same {attempts:,} jobs each)</text>')
    for i in range(5):
        v = ymax * i / 4
        svg.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="g"/>'
                   f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for k, ((label, _), r) in enumerate(zip(runs, rates)):
        pts = " ".join(f"{x((b + 0.5) * bucket):.1f},{y(v):.1f}" for b, v in enumerate(r))
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[k]}" stroke-width="2"/>')
        svg.append(f'<rect x="{W - 230}" y="{y0 + 6 + 16 * k}" width="12" height="12" fill="{COLORS[k]}"/>'
                   f'<text x="{W - 212}" y="{y0 + 16 + 16 * k}">{esc(label)}</text>')
    for i in range(7):
        t = span * i / 6
        svg.append(f'<text x="{x(t):.1f}" y="{y0 + th + 15}" text-anchor="middle">{t / 1000:.1f} s</text>')
    yy = y0 + th + 40
    for k, (label, rows) in enumerate(runs):
        slots = max(s for _, _, s, _ in rows) + 1
        lane = 1.5
        busy = [[0.0] * COLS for _ in range(slots)]
        bad = [[False] * COLS for _ in range(slots)]
        cw = span / COLS
        for s, e, slot, ok in rows:
            for c in range(int(s / cw), min(int(e / cw), COLS - 1) + 1):
                busy[slot][c] += max(0.0, min(e, (c + 1) * cw) - max(s, c * cw))
                bad[slot][c] |= not ok
        svg.append(f'<text x="{LEFT}" y="{yy + 12}" class="h">Worker timeline, {esc(label)}: one lane per worker, darker = busier, red = a failed attempt</text>')
        yy += 18
        for slot in range(slots):
            c = 0
            while c < COLS:
                level = 0 if busy[slot][c] == 0 else (3 if busy[slot][c] >= 0.66 * cw else (2 if busy[slot][c] >= 0.33 * cw else 1))
                key = (level, bad[slot][c])
                e = c + 1
                while e < COLS and (0 if busy[slot][e] == 0 else (3 if busy[slot][e] >= 0.66 * cw else (2 if busy[slot][e] >= 0.33 * cw else 1)), bad[slot][e]) == key:
                    e += 1
                if level:
                    color = "#e0544b" if key[1] else COLORS[k]
                    svg.append(f'<rect x="{LEFT + c * (W - LEFT - RIGHT) / COLS:.1f}" y="{yy + slot * lane:.1f}" '
                               f'width="{(e - c) * (W - LEFT - RIGHT) / COLS:.1f}" height="{lane}" fill="{color}" '
                               f'opacity="{[0, 0.3, 0.6, 1][level]}"/>')
                c = e
        svg.append(f'<text x="{LEFT - 6}" y="{yy + 10}" text-anchor="end">slot 0</text>'
                   f'<text x="{LEFT - 6}" y="{yy + slots * lane}" text-anchor="end">{slots - 1}</text>')
        yy += slots * lane + 12
    h = yy + 10
    with open(out, "w", encoding="utf-8") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h:.0f}" width="{W}" height="{h:.0f}" '
                f'font-family="system-ui,sans-serif" font-size="11">'
                f'<style>text{{fill:#444}}.h{{font-weight:600;fill:#222;font-size:12px}}.g{{stroke:#eee}}</style>'
                f'<rect width="100%" height="100%" fill="#fff"/>' + "".join(svg) + "</svg>\n")


if __name__ == "__main__":
    main()
