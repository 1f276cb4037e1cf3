//! A JSON `--body` (or `--args`) with placeholders in its strings: each
//! value goes in encoded as one JSON value, typed by its placeholder.

use super::template::{Cell, Hole, Kind, Lookup, Piece, Text};
use crate::json_text::{Token, decode_str, rewrite};

/// A JSON `--body` with placeholders in its strings.
#[derive(Debug, Clone)]
pub struct Body {
    /// The option it came from, for messages: `--body` or `--args`.
    what: &'static str,
    /// The template as written, checked to be JSON.
    text: String,
    holes: Vec<Hole>,
}

impl Body {
    /// Parses a JSON body template.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_as(text, "--body")
    }

    /// Parses a JSON template given as option `what` (`--body`, `--args`).
    pub fn parse_as(text: &str, what: &'static str) -> Result<Self, String> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| format!("{what} is not JSON ({e}); a template is a JSON document whose strings may hold {{column}}"))?;
        let mut holes = Vec::new();
        let mut problem = None;
        rewrite(text.as_bytes(), false, |token| {
            if let Token::Str(raw) = token
                && let Some(s) = decode_str(raw)
            {
                match Text::parse(&s, what) {
                    Ok(t) => {
                        let whole = t.pieces.len() == 1 && t.has_holes();
                        for h in t.holes() {
                            if !whole && h.kind != Kind::String {
                                problem.get_or_insert(format!(
                                    "{what}: {{{}}} is typed, but stands inside a longer string: a typed value must be the whole string, as in \"{{{}}}\"",
                                    h.name, h.name
                                ));
                            }
                            holes.push(h.clone());
                        }
                    }
                    Err(e) => {
                        problem.get_or_insert(e);
                    }
                }
            }
            None
        });
        match problem {
            Some(p) => Err(p),
            None => Ok(Body {
                what,
                text: text.to_string(),
                holes,
            }),
        }
    }

    /// Its placeholders.
    pub fn holes(&self) -> &[Hole] {
        &self.holes
    }

    /// The body for one row, minified, numbers of the template as written.
    pub fn render(&self, row: &dyn Lookup) -> Result<String, String> {
        let mut problem = None;
        let out = rewrite(self.text.as_bytes(), true, |token| {
            let Token::Str(raw) = token else { return None };
            let s = decode_str(raw)?;
            // Parsed once in `parse`: this cannot fail now.
            let t = Text::parse(&s, self.what).ok()?;
            let rendered = match (&t.pieces[..], t.has_holes()) {
                (_, false) if !s.contains('$') && !raw.contains(&b'{') => return None,
                ([Piece::Hole(h)], true) => typed(row, h, self.what),
                _ => t
                    .render(row, self.what, |_, v, _| Ok(v.to_string()))
                    .and_then(|v| serde_json::to_string(&v).map_err(|e| e.to_string())),
            };
            match rendered {
                Ok(r) => Some(r.into_bytes()),
                Err(e) => {
                    problem.get_or_insert(e);
                    None
                }
            }
        });
        if let Some(p) = problem {
            return Err(p);
        }
        Ok(match out {
            Some(bytes) => String::from_utf8(bytes).map_err(|e| e.to_string())?,
            None => self.text.clone(),
        })
    }
}

/// A placeholder that is a whole JSON string: the value, typed.
fn typed(row: &dyn Lookup, h: &Hole, what: &str) -> Result<String, String> {
    let cell = row
        .cell(&h.name)
        .ok_or_else(|| format!("{what} names {{{}}}, which this row does not have", h.name))?;
    let text = cell.text()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if text.is_empty() && h.optional {
        return Ok("null".into());
    }
    let option = what;
    let bad = |what: &str| {
        format!(
            "{option}: {{{}:{what}}} needs {what}, and the value {:?} is not one{}",
            h.name,
            truncate(text),
            if text.is_empty() {
                format!(
                    " (write {{{}:{what}?}} to send null for an empty cell)",
                    h.name
                )
            } else {
                String::new()
            }
        )
    };
    match h.kind {
        Kind::String => match cell {
            Cell::Raw(r) if r.get().starts_with('"') => Ok(r.get().to_string()),
            _ => serde_json::to_string(&cell.text()?).map_err(|e| e.to_string()),
        },
        Kind::Number => is_json_number(text, true)
            .then(|| text.to_string())
            .ok_or_else(|| bad("number")),
        Kind::Integer => is_json_number(text, false)
            .then(|| text.to_string())
            .ok_or_else(|| bad("integer")),
        Kind::Bool => match text {
            "true" | "TRUE" | "True" => Ok("true".into()),
            "false" | "FALSE" | "False" => Ok("false".into()),
            _ => Err(bad("bool")),
        },
        Kind::Json => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Ok(text.to_string()),
            Err(_) => Err(bad("json")),
        },
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Whether `t` is a JSON number (RFC 8259 grammar); without `fraction`,
/// an integer only.
pub(super) fn is_json_number(t: &str, fraction: bool) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    let int_start = i;
    if !digits(&mut i) || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if !fraction {
        return i == b.len();
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}
