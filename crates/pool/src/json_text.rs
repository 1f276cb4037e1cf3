//! JSON kept as text: one walk over a JSON document's tokens that lets a
//! caller replace strings and numbers and copies everything else byte for
//! byte. A number is never turned into a float on the way (a 23-digit id,
//! `1.50` and `1e400` stay as written), and a string is replaced by a
//! properly encoded one, never by splicing text into JSON.

/// A token the caller may replace.
pub(crate) enum Token<'a> {
    /// A string, with its quotes and escapes as written.
    Str(&'a [u8]),
    /// A number, as written.
    Num(&'a [u8]),
}

/// Walks `json` (a whole, valid JSON text), calling `f` on every string
/// (object keys included) and number: `Some(bytes)` replaces the token.
/// With `minify`, white space between tokens is dropped. Returns `None`
/// when nothing was replaced or dropped.
pub(crate) fn rewrite(
    json: &[u8],
    minify: bool,
    mut f: impl FnMut(Token<'_>) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < json.len() {
        let (end, replacement) = match json[i] {
            b'"' => {
                let end = string_end(json, i);
                (end, f(Token::Str(&json[i..end])))
            }
            b'-' | b'0'..=b'9' => {
                let end = i + json[i..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                (end, f(Token::Num(&json[i..end])))
            }
            b' ' | b'\n' | b'\r' | b'\t' if minify => (i + 1, Some(Vec::new())),
            _ => (i + 1, None),
        };
        if let Some(r) = replacement {
            let o = out.get_or_insert_with(|| Vec::with_capacity(json.len()));
            o.extend_from_slice(&json[copied..i]);
            o.extend_from_slice(&r);
            copied = end;
        }
        i = end;
    }
    let mut o = out?;
    o.extend_from_slice(&json[copied..]);
    Some(o)
}

/// The text of a string token (quotes and escapes as written), decoded.
pub(crate) fn decode_str(token: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let text = std::str::from_utf8(token).ok()?;
    if !text.contains('\\') {
        return text.get(1..text.len() - 1).map(std::borrow::Cow::Borrowed);
    }
    serde_json::from_str::<String>(text)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// The index just past the string token that starts at `json[start]`.
fn string_end(json: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return (i + 1).min(json.len()),
            _ => i += 1,
        }
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_numbers_as_written_and_replaces_strings() {
        let json = br#"{ "id": 12345678901234567890123, "p": 1.50, "h": 1E400, "s": "a\"b" }"#;
        let out = rewrite(json, true, |t| match t {
            Token::Str(s) if decode_str(s).as_deref() == Some("a\"b") => Some(b"\"X\"".to_vec()),
            _ => None,
        })
        .expect("changed");
        assert_eq!(
            out,
            br#"{"id":12345678901234567890123,"p":1.50,"h":1E400,"s":"X"}"#
        );
        assert!(rewrite(br#"{"a":1}"#, true, |_| None).is_none());
        assert!(rewrite(br#"{"a":1}"#, false, |_| None).is_none());
    }
}
