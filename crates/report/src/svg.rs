//! Small pieces of SVG written by hand: a plot area, its axes, and text
//! escaped for HTML. The page's charts are built from these alone, so the
//! page needs no library and no network, and every element a chart draws
//! is in the DOM for a test (or a person with the inspector) to count.

use std::fmt::Write;

use crate::frame::Frame;
use crate::time::clock;

/// The width of every chart, in SVG units (the page scales it).
pub const W: f64 = 1000.0;
/// Left margin (the y axis's labels).
pub const LEFT: f64 = 64.0;
/// Right margin.
pub const RIGHT: f64 = 12.0;

/// Text and attribute values made safe for HTML and SVG: the page shows
/// ids, kinds and messages from files anyone may have written.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A plot: `h` high, its area from `top` to `h - 24`.
pub struct Plot {
    /// The whole height.
    pub h: f64,
    /// The area's top.
    pub top: f64,
}

impl Plot {
    /// The area's bottom.
    pub fn bottom(&self) -> f64 {
        self.h - 24.0
    }

    /// The y of `v` on a scale from 0 to `max`.
    pub fn y(&self, v: f64, max: f64) -> f64 {
        let f = if max > 0.0 {
            (v / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.bottom() - f * (self.bottom() - self.top)
    }

    /// The x of axis position `ms` on `frame`'s axis.
    pub fn x(frame: &Frame, ms: f64) -> f64 {
        LEFT + (ms / frame.axis_ms).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }

    /// `<svg ...>` opening a chart with its id and a label.
    pub fn open(&self, out: &mut String, id: &str, label: &str) {
        let _ = write!(
            out,
            "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{}\">",
            self.h,
            esc(label)
        );
    }

    /// The y axis from 0 to `max` (already rounded), with a label.
    pub fn y_axis(&self, out: &mut String, max: f64, unit: &str) {
        out.push_str("<g class=\"axis\">");
        for i in 0..=4 {
            let v = max * f64::from(i) / 4.0;
            let y = self.y(v, max);
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                number(v)
            );
        }
        let _ = write!(
            out,
            "<text class=\"unit\" x=\"4\" y=\"{:.1}\">{}</text></g>",
            self.top - 2.0,
            esc(unit)
        );
    }

    /// The time axis: clock times (UTC) under the area, and a dashed line
    /// with a label at each part's start after the first.
    pub fn x_axis(&self, out: &mut String, frame: &Frame) {
        out.push_str("<g class=\"axis\">");
        let bottom = self.bottom();
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\"/>",
            W - RIGHT
        );
        let ticks = 8;
        for i in 0..=ticks {
            let ms = frame.axis_ms * f64::from(i) / f64::from(ticks);
            let p = &frame.parts[frame
                .parts
                .partition_point(|p| p.offset_ms <= ms)
                .saturating_sub(1)
                .min(frame.parts.len().saturating_sub(1))];
            let wall = p.start_ms + (ms - p.offset_ms) as i64;
            let x = Self::x(frame, ms);
            let anchor = match i {
                0 => "start",
                i if i == ticks => "end",
                _ => "middle",
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                bottom + 15.0,
                if frame.axis_ms < 20_000.0 {
                    crate::time::clock_tenths(wall)
                } else {
                    clock(wall)
                }
            );
        }
        out.push_str("</g>");
        self.part_lines(out, frame);
    }

    /// A dashed line where each part after the first begins.
    pub fn part_lines(&self, out: &mut String, frame: &Frame) {
        for (i, p) in frame.parts.iter().enumerate().skip(1) {
            let x = Self::x(frame, p.offset_ms);
            let label =
                if p.start.as_ref().is_some_and(|e| {
                    matches!(e, crate::runlog::Event::RunStart { resume: true, .. })
                }) {
                    format!("part {} (--resume)", i + 1)
                } else {
                    format!("part {}", i + 1)
                };
            let _ = write!(
                out,
                "<g class=\"part-line\"><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\"/><text x=\"{:.1}\" y=\"{}\">{}</text><title>{} started {}</title></g>",
                self.top,
                self.bottom(),
                x + 3.0,
                self.top + 10.0,
                label,
                label,
                crate::time::format_ms(p.start_ms)
            );
        }
    }
}

/// A round number at least `v` with a few steps: the top of a y axis.
pub fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 4.0, 5.0, 8.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A number for an axis: no needless decimals.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
        assert_eq!(nice_max(7.3), 8.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(1200.0), 2000.0);
        assert_eq!(number(2.5), "2.5");
    }
}
