//! Wall-clock times as the joblog writes them (RFC 3339, UTC, with
//! milliseconds), to and from milliseconds since the Unix epoch. Written
//! here rather than pulled in: the page needs only this one format and its
//! near relatives (other fractions, an offset instead of `Z`).

/// Milliseconds since 1970-01-01T00:00:00Z, or `None` for a text that is
/// not an RFC 3339 date-time.
pub fn parse_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// `2026-11-25T10:30:16.412Z` for milliseconds since the epoch.
pub fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{:02}.{:03}Z",
        rem / 1000,
        rem % 1000
    )
}

/// `10:30:16` (UTC) for axis labels.
pub fn clock(ms: i64) -> String {
    let rem = ms.rem_euclid(86_400_000) / 1000;
    format!("{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// `10:30:16.4` (UTC): for the axis of a run of seconds.
pub fn clock_tenths(ms: i64) -> String {
    format!("{}.{}", clock(ms), ms.rem_euclid(1000) / 100)
}

/// A span for people: 850 ms, 4.2 s, 2 min 05 s, 3 h 10 min.
pub fn span(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "—".into();
    }
    // No "-0 ms".
    let ms = ms.max(0.0) + 0.0;
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let s = s.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} d {:02} h", s / 86_400, (s % 86_400) / 3600)
    }
}

// Howard Hinnant's algorithms (public domain), on the proleptic Gregorian
// calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        let t = "2026-11-25T10:30:16.412Z";
        let ms = parse_ms(t).expect("parses");
        assert_eq!(format_ms(ms), t);
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ms("1970-01-01T01:00:00.5+01:00"), Some(500));
        assert_eq!(
            parse_ms("2000-02-29T00:00:00.123456Z"),
            Some(951_782_400_123)
        );
        assert_eq!(clock(ms), "10:30:16");
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T10:30:16.Z",
            "2026-11-25T10:30:16.412",
            "2026-11-25T10:30:16.412Zjunk",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(span(12.4), "12 ms");
        assert_eq!(span(4200.0), "4.2 s");
        assert_eq!(span(125_000.0), "2 min 05 s");
        assert_eq!(span(11_400_000.0), "3 h 10 min");
    }
}
