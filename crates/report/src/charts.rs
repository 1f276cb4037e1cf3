//! The page's charts, as inline SVG: throughput, latency over time, the
//! latency histogram, failures by kind, and the worker timeline. Each
//! series is a `<g class="series" data-series=NAME>`, each lane a
//! `<g class="lane">`: what the browser test counts.

use std::fmt::Write;

use crate::fill::{Model, OTHER_KINDS};
use crate::joblog::End;
use crate::svg::{LEFT, Plot, RIGHT, W, esc, nice_max, number};
use crate::time::span;

/// The colours of failure kinds, in order (CSS classes k0..k9).
pub const KIND_CLASSES: usize = 10;

/// A bucket's real width in seconds (the last one may be cut short).
fn bucket_secs(m: &Model, b: usize) -> f64 {
    let f = &m.frame;
    let lo = b as f64 * f.bucket_ms;
    ((f.axis_ms.min(lo + f.bucket_ms) - lo).max(f.bucket_ms * 0.05)) / 1000.0
}

fn bar_x(m: &Model, b: usize) -> (f64, f64) {
    let f = &m.frame;
    let x0 = Plot::x(f, b as f64 * f.bucket_ms);
    let x1 = Plot::x(f, ((b + 1) as f64 * f.bucket_ms).min(f.axis_ms));
    (x0, (x1 - x0 - 0.6).max(0.4))
}

/// Stacked bars, one `<g class="series">` per series, of per-second rates.
fn stacked(out: &mut String, m: &Model, plot: &Plot, series: &[(&str, &str, &[u64])]) -> f64 {
    let n = m.frame.buckets;
    let totals: Vec<f64> = (0..n)
        .map(|b| series.iter().map(|s| s.2[b] as f64).sum::<f64>() / bucket_secs(m, b))
        .collect();
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    plot.y_axis(out, max, "per second");
    let mut base = vec![0.0; n];
    for (name, class, counts) in series {
        let _ = write!(
            out,
            "<g class=\"series {class}\" data-series=\"{}\">",
            esc(name)
        );
        for b in 0..n {
            if counts[b] == 0 {
                continue;
            }
            let v = counts[b] as f64 / bucket_secs(m, b);
            let (x, w) = bar_x(m, b);
            let y0 = plot.y(base[b], max);
            let y1 = plot.y(base[b] + v, max);
            base[b] += v;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{w:.1}\" height=\"{:.1}\"><title>{}: {} ({}/s)</title></rect>",
                (y0 - y1).max(0.3),
                esc(name),
                counts[b],
                number(v)
            );
        }
        out.push_str("</g>");
    }
    max
}

/// Throughput: ok, retried and failed attempts per second, stacked, with
/// pauses, slowdowns and stops marked.
pub fn throughput(out: &mut String, m: &Model) {
    let plot = Plot {
        h: 240.0,
        top: 16.0,
    };
    plot.open(out, "throughput", "attempts per second over time");
    stacked(
        out,
        m,
        &plot,
        &[
            ("ok", "ok", &m.throughput[0]),
            ("retried", "retried", &m.throughput[1]),
            ("failed", "failed", &m.throughput[2]),
        ],
    );
    plot.x_axis(out, &m.frame);
    overlays(out, m, &plot);
    out.push_str("</svg>");
}

/// Pause bands, slowdown ticks and stop lines on a time chart.
fn overlays(out: &mut String, m: &Model, plot: &Plot) {
    let (top, bottom) = (plot.top, plot.bottom());
    for (a, b, why) in &m.pauses {
        let (x0, x1) = (Plot::x(&m.frame, *a), Plot::x(&m.frame, *b));
        let _ = write!(
            out,
            "<rect class=\"pause\" x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\"><title>paused {}: {}</title></rect>",
            (x1 - x0).max(1.5),
            bottom - top,
            span(b - a),
            esc(why)
        );
    }
    for (a, rate) in &m.slowdowns {
        let x = Plot::x(&m.frame, *a);
        let _ = write!(
            out,
            "<path class=\"slowdown\" d=\"M{:.1} {top}h8l-4 7z\"><title>429: slowed to {} requests/s</title></path>",
            x - 4.0,
            number(*rate)
        );
    }
    for (a, why) in &m.stops {
        let x = Plot::x(&m.frame, *a);
        let _ = write!(
            out,
            "<g class=\"stop\"><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{bottom}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><title>the run began to stop: {}</title></g>",
            x - 3.0,
            top + 10.0,
            esc(why),
            esc(why)
        );
    }
}

/// Latency of ok attempts: p50, p95 and p99 per bucket, as lines.
pub fn latency(out: &mut String, m: &Model) {
    let plot = Plot {
        h: 240.0,
        top: 16.0,
    };
    plot.open(out, "latency", "latency percentiles over time");
    let qs = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)];
    let max = nice_max(
        m.latency
            .iter()
            .filter_map(|h| h.quantile_ms(0.99))
            .fold(0.0, f64::max),
    );
    plot.y_axis(out, max, "ms");
    for (name, q) in qs {
        let _ = write!(
            out,
            "<g class=\"series {name}\" data-series=\"{name}\"><path d=\""
        );
        let mut pen_down = false;
        let mut dots = String::new();
        for (b, h) in m.latency.iter().enumerate() {
            let Some(v) = h.quantile_ms(q) else {
                pen_down = false;
                continue;
            };
            let (x, w) = bar_x(m, b);
            let (x, y) = (x + w / 2.0, plot.y(v, max));
            let _ = write!(out, "{}{x:.1} {y:.1}", if pen_down { "L" } else { "M" });
            pen_down = true;
            let _ = write!(
                dots,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"><title>{name} {} ({} ok)</title></circle>",
                span(v),
                h.count()
            );
        }
        let _ = write!(out, "\"/>{dots}</g>");
    }
    plot.x_axis(out, &m.frame);
    overlays(out, m, &plot);
    out.push_str("</svg>");
}

/// The histogram of ok latencies, on a log scale, with p50/p95/p99 lines.
pub fn histogram(out: &mut String, m: &Model) {
    let plot = Plot {
        h: 220.0,
        top: 16.0,
    };
    plot.open(out, "histogram", "latency histogram of ok attempts");
    let bins = m.latency_all.log_bins(40);
    let max = nice_max(bins.iter().map(|b| b.2 as f64).fold(0.0, f64::max));
    plot.y_axis(out, max, "attempts");
    let (lo, hi) = match (bins.first(), bins.last()) {
        (Some(a), Some(z)) => (
            a.0.max(1e-3).ln(),
            z.1.max(1e-3).ln().max(a.0.max(1e-3).ln() + 1e-9),
        ),
        _ => (0.0, 1.0),
    };
    let x = |ms: f64| {
        LEFT + ((ms.max(1e-3).ln() - lo) / (hi - lo)).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    };
    out.push_str("<g class=\"series ok\" data-series=\"ok\">");
    for (a, z, c) in &bins {
        if *c == 0 {
            continue;
        }
        let (x0, x1) = (x(*a), x(*z));
        let y = plot.y(*c as f64, max);
        let _ = write!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} to {}: {c}</title></rect>",
            (x1 - x0 - 0.6).max(0.4),
            (plot.bottom() - y).max(0.3),
            span(*a),
            span(*z)
        );
    }
    out.push_str("</g><g class=\"axis\">");
    for i in 0..=6 {
        let ms = (lo + (hi - lo) * f64::from(i) / 6.0).exp();
        let anchor = match i {
            0 => "start",
            6 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(ms),
            plot.bottom() + 15.0,
            span(ms)
        );
    }
    out.push_str("</g>");
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        if let Some(v) = m.latency_all.quantile_ms(q) {
            let xv = x(v);
            let _ = write!(
                out,
                "<g class=\"quantile {name}\"><line x1=\"{xv:.1}\" x2=\"{xv:.1}\" y1=\"{}\" y2=\"{}\"/><text x=\"{:.1}\" y=\"{}\">{name}</text></g>",
                plot.top,
                plot.bottom(),
                xv + 2.0,
                plot.top + 8.0
            );
        }
    }
    out.push_str("</svg>");
}

/// The CSS class of the `i`-th kind.
pub fn kind_class(m: &Model, i: usize) -> String {
    if m.kinds[i].name == OTHER_KINDS {
        "kother".into()
    } else {
        format!("k{}", i % KIND_CLASSES)
    }
}

/// Failed attempts per second by kind, stacked.
pub fn failures(out: &mut String, m: &Model) {
    let plot = Plot {
        h: 220.0,
        top: 16.0,
    };
    plot.open(out, "failures", "failed attempts by kind over time");
    let classes: Vec<String> = (0..m.kinds.len()).map(|i| kind_class(m, i)).collect();
    let series: Vec<(&str, &str, &[u64])> = m
        .kinds
        .iter()
        .zip(&classes)
        .map(|(k, c)| (k.name.as_str(), c.as_str(), k.per_bucket.as_slice()))
        .collect();
    stacked(out, m, &plot, &series);
    plot.x_axis(out, &m.frame);
    overlays(out, m, &plot);
    out.push_str("</svg>");
}

/// The worker timeline: one lane per slot, grouped by host; each cell
/// coloured by the worst end of the attempts in it, its shade by how busy
/// the worker was; markers for worker starts, kills and crashes.
pub fn timeline(out: &mut String, m: &Model) {
    let f = &m.frame;
    let lanes = f.lanes.len();
    let lane_h = (640.0 / lanes.max(1) as f64).clamp(2.0, 14.0);
    let host_h = if f.hosts.is_empty() { 0.0 } else { 16.0 };
    let groups = if f.hosts.is_empty() { 1 } else { f.hosts.len() };
    let top = 16.0;
    let h = top + lanes as f64 * lane_h + groups as f64 * host_h + 24.0;
    let plot = Plot { h, top };
    plot.open(out, "timeline", "worker timeline, one lane per worker slot");
    let col_w = (W - LEFT - RIGHT) / m.columns as f64;
    // Rect titles cost bytes: only for a timeline small enough to hover.
    let runs = count_runs(m);
    let titles = runs <= 10_000;
    let mut y = top;
    let mut lane_y = vec![0.0; lanes];
    let mut current_host: Option<&str> = None;
    for (li, (host, slot)) in f.lanes.iter().enumerate() {
        if !f.hosts.is_empty() && current_host != Some(host.as_str()) {
            if current_host.is_some() {
                out.push_str("</g>");
            }
            current_host = Some(host.as_str());
            let _ = write!(
                out,
                "<g class=\"host\" data-host=\"{}\"><text class=\"host-name\" x=\"4\" y=\"{:.1}\">{}</text>",
                esc(host),
                y + 12.0,
                esc(if host == ":" {
                    ": (this machine)"
                } else {
                    host
                })
            );
            y += host_h;
        }
        lane_y[li] = y;
        let _ = write!(out, "<g class=\"lane\" data-slot=\"{slot}\">");
        if lane_h >= 9.0 {
            let _ = write!(
                out,
                "<text class=\"lane-name\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{slot}</text>",
                LEFT - 4.0,
                y + lane_h - 2.0
            );
        }
        let row = &m.cells[li * m.columns..(li + 1) * m.columns];
        let mut c = 0;
        while c < row.len() {
            let key = cell_key(m, row[c]);
            let mut e = c + 1;
            let mut ended = u64::from(row[c].ended);
            while e < row.len() && cell_key(m, row[e]) == key {
                ended += u64::from(row[e].ended);
                e += 1;
            }
            if let Some((worst, shade)) = key {
                let end = End::ALL[usize::from(worst - 1)];
                let _ = write!(
                    out,
                    "<rect class=\"{} b{shade}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\">",
                    end.name(),
                    LEFT + c as f64 * col_w,
                    y + 0.5,
                    (e - c) as f64 * col_w,
                    (lane_h - 1.0).max(1.0)
                );
                if titles {
                    let _ = write!(
                        out,
                        "<title>worker {slot}: {ended} attempt{} ended here; worst: {}</title>",
                        if ended == 1 { "" } else { "s" },
                        end.name()
                    );
                }
                out.push_str("</rect>");
            }
            c = e;
        }
        out.push_str("</g>");
        y += lane_h;
    }
    if current_host.is_some() {
        out.push_str("</g>");
    }
    out.push_str("<g class=\"markers\">");
    for mk in &m.markers {
        let x = Plot::x(f, mk.x);
        let y0 = lane_y[mk.lane];
        let d = match mk.mark.name() {
            "kill" | "crash" => {
                let s = (lane_h / 2.0).clamp(2.0, 5.0);
                let cy = y0 + lane_h / 2.0;
                format!(
                    "M{:.1} {:.1}l{:.1} {:.1}m0 {:.1}l{:.1} {:.1}",
                    x - s,
                    cy - s,
                    2.0 * s,
                    2.0 * s,
                    -2.0 * s,
                    -2.0 * s,
                    2.0 * s
                )
            }
            _ => format!("M{x:.1} {y0:.1}v{:.1}", lane_h),
        };
        let _ = write!(
            out,
            "<path class=\"mark {}\" d=\"{d}\"><title>{}</title></path>",
            mk.mark.name(),
            esc(&mk.note)
        );
    }
    out.push_str("</g>");
    let axis = Plot { h, top };
    axis.x_axis(out, f);
    overlays(out, m, &Plot { h, top });
    out.push_str("</svg>");
}

/// A cell's look: its worst end and how busy it was (1 to 3), or `None`
/// for an idle cell.
fn cell_key(m: &Model, c: crate::fill::Cell) -> Option<(u8, u8)> {
    if c.worst == 0 {
        return None;
    }
    let width = m.frame.axis_ms / m.columns as f64;
    let busy = f64::from(c.busy_ms) / width;
    let shade = if busy >= 0.66 {
        3
    } else if busy >= 0.33 {
        2
    } else {
        1
    };
    Some((c.worst, shade))
}

fn count_runs(m: &Model) -> usize {
    let mut runs = 0;
    for row in m.cells.chunks(m.columns.max(1)) {
        let mut last = None;
        for c in row {
            let k = cell_key(m, *c);
            if k.is_some() && k != last {
                runs += 1;
            }
            last = k;
        }
    }
    runs
}
