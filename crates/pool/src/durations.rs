//! Durations as people write them on the command line and in jobs files.

use std::time::Duration;

/// Parses a duration as people write it: `500ms`, `2s`, `1m`, `1m30s`,
/// `2h`; a bare number is seconds. Months and years are refused (humantime
/// reads `1M` as a month: nobody means that for a deadline). Zero is a
/// duration; [`parse_deadline`] refuses it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let d = if let Ok(secs) = t.parse::<f64>() {
        Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is not a valid duration"))?
    } else {
        if let Some(unit) = calendar_unit(t) {
            return Err(format!(
                "{text:?}: {unit} is not a unit here (a month or a year); use ms, s, m (minutes), h or d, e.g. 30s, 5m"
            ));
        }
        humantime::parse_duration(t)
            .map_err(|e| format!("{text:?} is not a duration like 500ms, 2s or 1m ({e})"))?
    };
    Ok(d)
}

/// A deadline: [`parse_duration`], more than zero (a zero deadline would
/// kill every attempt as it starts).
pub fn parse_deadline(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!(
            "{text:?}: a deadline must be more than zero (it bounds every attempt), e.g. 30s"
        ));
    }
    Ok(d)
}

/// The first calendar unit (months, years) humantime would accept in `t`.
fn calendar_unit(t: &str) -> Option<String> {
    let mut rest = t;
    while !rest.is_empty() {
        let num = rest.find(|c: char| !c.is_ascii_digit() && c != '.' && c != ' ')?;
        rest = &rest[num..];
        let end = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        let unit = &rest[..end];
        if matches!(unit, "M" | "month" | "months" | "y" | "year" | "years") {
            return Some(format!("{unit:?}"));
        }
        rest = &rest[end..];
    }
    None
}
