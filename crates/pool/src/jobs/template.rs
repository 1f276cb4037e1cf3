//! Requests built from a row's columns: `{column}` placeholders in `--url`
//! (path and query), `--header` values, `--form` values and a JSON
//! `--body`, each value encoded for where it stands. A value can never
//! change a request's structure: in a path it is one percent-encoded
//! segment (a `/`, `?`, `#`, `%` or space stays inside it), in a query one
//! query value, in a header one header value (a line break is refused), in
//! a JSON body one JSON value, encoded, never spliced.
//!
//! The syntax is GNU parallel's and qsv's `{column}`, which is also how
//! API references write a path (`/users/{login}`); `{column:number}`,
//! `:integer`, `:bool`, `:json` type a value in a JSON body, a trailing
//! `?` (`{column?}`, `{column:number?}`) makes an empty cell `null` (in a
//! body) or empty (elsewhere) instead of an error; `{{` and `}}` are
//! literal braces; `${NAME}` is still the environment variable NAME.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::json_text::decode_str;

pub use super::body::Body;

/// How a placeholder's value is written in a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON string (the default).
    String,
    /// A JSON number, as written in the cell.
    Number,
    /// A JSON number without a fraction or exponent.
    Integer,
    /// `true` or `false`.
    Bool,
    /// The cell is JSON, sent as it is.
    Json,
}

/// One `{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// The column (or `--rename`d parameter) it names.
    pub name: String,
    pub(super) kind: Kind,
    /// `?`: an empty cell is allowed.
    pub(super) optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Lit(String),
    Hole(Hole),
}

/// A text with placeholders; literal parts already `${NAME}`-expanded.
#[derive(Debug, Clone)]
pub struct Text {
    pub(super) pieces: Vec<Piece>,
}

/// A cell as a template reads it: a table's text, or a JSON Lines job's
/// parameter as written (a number keeps its digits).
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// A table's cell.
    Text(&'a str),
    /// A JSON value as written.
    Raw(&'a RawValue),
}

impl Cell<'_> {
    /// The value as text: a string decoded, anything else as written.
    pub(super) fn text(&self) -> Result<Cow<'_, str>, String> {
        match self {
            Cell::Text(t) => Ok(Cow::Borrowed(t)),
            Cell::Raw(r) => {
                let raw = r.get();
                if raw.starts_with('"') {
                    decode_str(raw.as_bytes())
                        .ok_or_else(|| "a string that cannot be decoded".to_string())
                } else {
                    Ok(Cow::Borrowed(raw))
                }
            }
        }
    }
}

/// Finds a placeholder's value by name.
pub trait Lookup {
    /// The value named `name`, if the row has one.
    fn cell(&self, name: &str) -> Option<Cell<'_>>;
}

impl Text {
    /// Parses `text` (named `what` in messages, e.g. `--url`).
    pub fn parse(text: &str, what: &str) -> Result<Self, String> {
        Self::parse_with(text, what, &|name| std::env::var(name).ok())
    }

    /// [`Text::parse`], `${NAME}` looked up with `env`.
    pub fn parse_with(
        text: &str,
        what: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}', '$']) {
            lit.push_str(&rest[..i]);
            let at = &rest[i..];
            if let Some(after) = at.strip_prefix("${") {
                // An environment reference: kept whole, expanded below.
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("{what} {text:?}: \"${{\" is not closed by \"}}\""))?;
                lit.push_str(&at[..end + 3]);
                rest = &after[end + 1..];
            } else if at.starts_with("{{") || at.starts_with("}}") {
                lit.push_str(&at[..1]);
                rest = &at[2..];
            } else if let Some(after) = at.strip_prefix('$') {
                lit.push('$');
                rest = after;
            } else if at.starts_with('}') {
                return Err(format!(
                    "{what} {text:?}: a \"}}\" that closes no placeholder; write \"}}}}\" for a literal brace"
                ));
            } else {
                let end = at.find('}').ok_or_else(|| {
                    format!(
                        "{what} {text:?}: a \"{{\" that is never closed; a placeholder is {{column}}, a literal brace is written \"{{{{\""
                    )
                })?;
                let hole =
                    parse_hole(&at[1..end]).map_err(|why| format!("{what} {text:?}: {why}"))?;
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(expand(&std::mem::take(&mut lit), what, env)?));
                }
                pieces.push(Piece::Hole(hole));
                rest = &at[end + 1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(expand(&lit, what, env)?));
        }
        Ok(Text { pieces })
    }

    /// Whether it has any placeholder.
    pub fn has_holes(&self) -> bool {
        self.holes().next().is_some()
    }

    /// Its placeholders.
    pub fn holes(&self) -> impl Iterator<Item = &Hole> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Hole(h) => Some(h),
            Piece::Lit(_) => None,
        })
    }

    /// The text with each placeholder replaced by `encode(value)`.
    pub(super) fn render(
        &self,
        row: &dyn Lookup,
        what: &str,
        mut encode: impl FnMut(&Hole, &str, &str) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Hole(h) => {
                    let value = lookup_text(row, h, what)?;
                    out.push_str(&encode(h, &value, &out)?);
                }
            }
        }
        Ok(out)
    }

    /// As plain text, for a header or form value: a line break or NUL in a
    /// value is refused (never header injection).
    pub fn render_plain(&self, row: &dyn Lookup, what: &str) -> Result<String, String> {
        self.render(row, what, |h, v, _| {
            if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(format!(
                    "{what}: the value of {{{}}} holds a line break or a NUL byte, which a header cannot carry",
                    h.name
                ));
            }
            Ok(v.to_string())
        })
    }

    /// As a URL: a value before the `?` is one path segment, after it one
    /// query value; both percent-encoded but for the unreserved characters.
    pub fn render_url(&self, row: &dyn Lookup, what: &str) -> Result<String, String> {
        self.render(row, what, |h, v, before| {
            if before.contains('#') {
                return Err(format!(
                    "{what}: {{{}}} stands in the URL's fragment (after #), which is never sent",
                    h.name
                ));
            }
            let in_path = !before.contains('?');
            if in_path && v.is_empty() && !h.optional {
                return Err(format!(
                    "{what}: {{{}}} is empty, and a path needs a value (write {{{}?}} to allow it)",
                    h.name, h.name
                ));
            }
            if in_path && (v == "." || v == "..") && before.ends_with('/') {
                return Err(format!(
                    "{what}: {{{}}} is {v:?}, which as a path segment would move up the path",
                    h.name
                ));
            }
            Ok(percent_encode(v))
        })
    }
}

/// Percent-encodes every byte but `A-Z a-z 0-9 - . _ ~` (RFC 3986's
/// unreserved characters).
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn expand(lit: &str, what: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    crate::jobs::expand::expand_with(lit, env).map_err(|e| format!("{what}: {e}"))
}

fn parse_hole(inner: &str) -> Result<Hole, String> {
    let (inner, optional) = match inner.strip_suffix('?') {
        Some(i) => (i, true),
        None => (inner, false),
    };
    let (name, kind) = match inner.rsplit_once(':') {
        Some((name, kind)) => (
            name,
            match kind.trim() {
                "string" => Kind::String,
                "number" => Kind::Number,
                "integer" => Kind::Integer,
                "bool" => Kind::Bool,
                "json" => Kind::Json,
                other => {
                    return Err(format!(
                        "{{{inner}}}: unknown type {other:?} (string, number, integer, bool or json)"
                    ));
                }
            },
        ),
        None => (inner, Kind::String),
    };
    let name = name.trim();
    if name.is_empty() || name.contains('{') {
        return Err(format!("{{{inner}}} names no column"));
    }
    Ok(Hole {
        name: name.to_string(),
        kind,
        optional,
    })
}

fn lookup_text<'r>(row: &'r dyn Lookup, h: &Hole, what: &str) -> Result<Cow<'r, str>, String> {
    let cell = row
        .cell(&h.name)
        .ok_or_else(|| format!("{what} names {{{}}}, which this row does not have", h.name))?;
    let text = cell.text()?;
    Ok(Cow::Owned(text.into_owned()))
}

/// Every template of a run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// `--url` with placeholders.
    pub url: Option<Text>,
    /// `--header` values with placeholders.
    pub headers: Vec<(String, Text)>,
    /// `--body`.
    pub body: Option<Body>,
    /// `--form` pairs.
    pub form: Vec<(String, Text)>,
    /// `--args`: each row becomes a job of the worker's own, not an HTTP
    /// call, with these arguments.
    pub args: Option<Body>,
}

impl Templates {
    /// Whether a template builds the body (`--body`, `--form`): then a
    /// row's values go only where a placeholder puts them.
    pub fn builds_body(&self) -> bool {
        self.body.is_some() || !self.form.is_empty()
    }

    /// Every placeholder of every template.
    pub fn holes(&self) -> impl Iterator<Item = &Hole> {
        let texts = self
            .url
            .iter()
            .chain(self.headers.iter().map(|(_, t)| t))
            .chain(self.form.iter().map(|(_, t)| t));
        texts
            .flat_map(|t| t.holes())
            .chain(self.body.iter().flat_map(|b| b.holes().iter()))
            .chain(self.args.iter().flat_map(|b| b.holes().iter()))
    }

    /// Each placeholder with the option it stands in, for messages.
    pub fn holes_by_option(&self) -> Vec<(String, &Hole)> {
        let mut out = Vec::new();
        for h in self.url.iter().flat_map(|t| t.holes()) {
            out.push(("--url".to_string(), h));
        }
        for (name, t) in &self.headers {
            out.extend(t.holes().map(|h| (format!("--header {name}"), h)));
        }
        for (name, t) in &self.form {
            out.extend(t.holes().map(|h| (format!("--form {name}"), h)));
        }
        for h in self.body.iter().flat_map(|b| b.holes()) {
            out.push(("--body".to_string(), h));
        }
        for h in self.args.iter().flat_map(|b| b.holes()) {
            out.push(("--args".to_string(), h));
        }
        out
    }

    /// Whether a placeholder names `name`: then it is not also sent as a
    /// query parameter.
    pub fn uses(&self, name: &str) -> bool {
        self.holes().any(|h| h.name == name)
    }

    /// Whether there is any placeholder at all.
    pub fn is_empty(&self) -> bool {
        self.holes().next().is_none() && !self.builds_body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::body::is_json_number;
    use std::collections::HashMap;

    struct Row(HashMap<&'static str, &'static str>);
    impl Lookup for Row {
        fn cell(&self, name: &str) -> Option<Cell<'_>> {
            self.0.get(name).map(|v| Cell::Text(v))
        }
    }
    fn row(pairs: &[(&'static str, &'static str)]) -> Row {
        Row(pairs.iter().copied().collect())
    }

    #[test]
    fn a_value_never_changes_the_urls_structure() {
        let t = Text::parse("https://h/geo/{q}.json?lang={lang}&x={{1}}", "--url").unwrap();
        let r = row(&[("q", "a/b?c#d%2F e 🙂"), ("lang", "fr&x=1")]);
        assert_eq!(
            t.render_url(&r, "--url").unwrap(),
            "https://h/geo/a%2Fb%3Fc%23d%252F%20e%20%F0%9F%99%82.json?lang=fr%26x%3D1&x={1}"
        );
        for bad in ["", "..", "."] {
            let t = Text::parse("https://h/users/{login}", "--url").unwrap();
            let e = t.render_url(&row(&[("login", bad)]), "--url").unwrap_err();
            assert!(e.contains("{login}"), "{e}");
        }
        let e = t.render_url(&row(&[("q", "x")]), "--url").unwrap_err();
        assert!(
            e.contains("names {lang}, which this row does not have"),
            "{e}"
        );
    }

    #[test]
    fn bad_templates_are_named() {
        for (t, says) in [
            ("https://h/{q", "never closed"),
            ("https://h/q}", "closes no placeholder"),
            ("https://h/{}", "names no column"),
            ("https://h/{q:float}", "unknown type"),
        ] {
            let e = Text::parse(t, "--url").unwrap_err();
            assert!(e.contains(says) && e.starts_with("--url"), "{t}: {e}");
        }
    }

    #[test]
    fn header_values_cannot_inject() {
        let t = Text::parse("Bearer {tok}", "--header X").unwrap();
        assert!(
            t.render_plain(&row(&[("tok", "a\r\nX-Evil: 1")]), "--header X")
                .is_err()
        );
        assert_eq!(
            t.render_plain(&row(&[("tok", "abc")]), "--header X")
                .unwrap(),
            "Bearer abc"
        );
    }

    #[test]
    fn bodies_are_json_with_typed_values() {
        let b = Body::parse(
            r#"{"address": {"lines": ["{street}", "{city}, {zip}"]}, "n": "{n:number}", "i": "{i:integer?}", "ok": "{ok:bool}", "raw": "{j:json}", "big": 12345678901234567890123, "lit": "{{x}}"}"#,
        )
        .unwrap();
        let r = row(&[
            ("street", "1 \"Main\" St"),
            ("city", "Zürich"),
            ("zip", "8001"),
            ("n", "1.50"),
            ("i", ""),
            ("ok", "true"),
            ("j", "[1, {\"a\": null}]"),
        ]);
        assert_eq!(
            b.render(&r).unwrap(),
            r#"{"address":{"lines":["1 \"Main\" St","Zürich, 8001"]},"n":1.50,"i":null,"ok":true,"raw":[1, {"a": null}],"big":12345678901234567890123,"lit":"{x}"}"#
        );
        let e = b
            .render(&row(&[
                ("street", ""),
                ("city", ""),
                ("zip", ""),
                ("n", "abc"),
                ("i", ""),
                ("ok", "true"),
                ("j", "1"),
            ]))
            .unwrap_err();
        assert!(
            e.contains("{n:number} needs number, and the value \"abc\""),
            "{e}"
        );
        assert!(
            Body::parse("{not json")
                .unwrap_err()
                .contains("--body is not JSON")
        );
        assert!(
            Body::parse(r#"{"a":"x {n:number}"}"#)
                .unwrap_err()
                .contains("typed")
        );
    }

    #[test]
    fn json_numbers() {
        for ok in [
            "0",
            "-1",
            "1.50",
            "1e400",
            "12345678901234567890123",
            "2E-3",
        ] {
            assert!(is_json_number(ok, true), "{ok}");
        }
        for bad in ["", "1,5", "01", ".5", "1.", "abc", "+1", "1e"] {
            assert!(!is_json_number(bad, true), "{bad}");
        }
        assert!(!is_json_number("1.5", false) && is_json_number("-12", false));
    }
}
