//! Turning a ureq response into a protocol [`HttpResponse`]: headers and body.

use std::collections::BTreeMap;

use callpool_protocol::BodyKind;
use serde_json::value::RawValue;
use ureq::http::{HeaderMap, header::CONTENT_TYPE};

/// The response headers as the protocol reports them: lower-case names (the
/// `http` crate already stores them so), each name once, repeated headers
/// joined with `", "` in the order received. Bytes that are not UTF-8 become
/// U+FFFD.
pub fn join_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    // One pass: `iter` gives every value, those of one name together and
    // in order. (Looking each name up again with `get_all` cost a third of
    // this function.)
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match out.get_mut(name.as_str()) {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => {
                out.insert(name.as_str().to_owned(), value.into_owned());
            }
        }
    }
    out
}

/// Whether a `content-type` value names JSON: `application/json` or any
/// `+json` subtype (`application/problem+json`, ...), parameters ignored,
/// letter case ignored.
pub fn is_json_content_type(value: &[u8]) -> bool {
    let essence = match value.iter().position(|&b| b == b';') {
        Some(i) => &value[..i],
        None => value,
    };
    let essence = essence.trim_ascii();
    let Some(slash) = essence.iter().position(|&b| b == b'/') else {
        return false;
    };
    let subtype = &essence[slash + 1..];
    essence.eq_ignore_ascii_case(b"application/json")
        || (slash > 0
            && subtype.len() > 5
            && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// Whether the response headers declare a JSON body.
pub fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| is_json_content_type(v.as_bytes()))
}

/// The protocol body of a response: the JSON document itself when the
/// response declares JSON and the bytes are one valid JSON document, else
/// the text as a JSON string (invalid UTF-8 replaced by U+FFFD).
///
/// The JSON check parses once without building a value tree.
pub fn body_to_raw(bytes: Vec<u8>, json: bool) -> (BodyKind, Box<RawValue>) {
    match String::from_utf8(bytes) {
        Ok(text) => {
            if json {
                if let Ok(raw) = serde_json::from_str::<&RawValue>(&text) {
                    // A copy without surrounding whitespace; no second parse.
                    // Pretty-printed JSON (Google's answers are) has line
                    // breaks between tokens, and a result must be one line:
                    // those go, the text of every value stays as sent.
                    if raw.get().contains(['\n', '\r']) {
                        let compact = compact_json(raw.get());
                        if let Ok(raw) = RawValue::from_string(compact) {
                            return (BodyKind::Json, raw);
                        }
                    }
                    return (BodyKind::Json, raw.to_owned());
                }
            }
            (BodyKind::Text, text_to_raw(&text))
        }
        // Not UTF-8, so not JSON either (RFC 8259 §8.1): text, lossily.
        Err(e) => (
            BodyKind::Text,
            text_to_raw(&String::from_utf8_lossy(e.as_bytes())),
        ),
    }
}

/// Valid JSON without the whitespace between its tokens. Strings (where a
/// line break can only be escaped) and numbers are copied as they are, so
/// `1e400` or a 30-digit id keep their exact text.
fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// `text` as a JSON string value.
pub fn text_to_raw(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).expect("a string always serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::{HeaderName, HeaderValue};

    #[test]
    fn pretty_json_becomes_one_line_with_values_untouched() {
        let pretty = "{\n  \"results\" : [ {\"formatted_address\": \"10 Main St,\\n NY\",\n \"n\": 1e400, \"id\": 123456789012345678901234567890, \"s\": \"a \\\" b\" } ],\r\n  \"status\" : \"OK\"\n}\n";
        let (kind, raw) = body_to_raw(pretty.as_bytes().to_vec(), true);
        assert_eq!(kind, BodyKind::Json);
        assert_eq!(
            raw.get(),
            r#"{"results":[{"formatted_address":"10 Main St,\n NY","n":1e400,"id":123456789012345678901234567890,"s":"a \" b"}],"status":"OK"}"#
        );
        assert!(!raw.get().contains('\n'));
    }

    #[test]
    fn headers_are_joined_in_order() {
        let mut h = HeaderMap::new();
        h.append("Set-Cookie", HeaderValue::from_static("a=1"));
        h.append("content-type", HeaderValue::from_static("text/plain"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.append(
            HeaderName::from_static("x-bytes"),
            HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is allowed"),
        );
        let j = join_headers(&h);
        assert_eq!(j["set-cookie"], "a=1, b=2");
        assert_eq!(j["content-type"], "text/plain");
        assert_eq!(j["x-bytes"], "caf\u{fffd}");
        assert_eq!(j.len(), 3);
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/problem+json",
            "application/vnd.api+JSON;v=1",
        ] {
            assert!(is_json_content_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonp",
            "text/json-ish",
            "+json",
            "/+json",
            "application/+json",
            "",
            "application/x-ndjson",
        ] {
            assert!(!is_json_content_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn json_body_is_kept_raw() {
        let (k, raw) = body_to_raw(b" {\"a\": [1, 2]}\n".to_vec(), true);
        assert_eq!(k, BodyKind::Json);
        assert_eq!(raw.get(), "{\"a\": [1, 2]}");
    }

    #[test]
    fn invalid_json_becomes_text() {
        let (k, raw) = body_to_raw(b"{\"a\":".to_vec(), true);
        assert_eq!(k, BodyKind::Text);
        assert_eq!(raw.get(), r#""{\"a\":""#);
        let (k, raw) = body_to_raw(b"1 2".to_vec(), true);
        assert_eq!(k, BodyKind::Text);
        assert_eq!(raw.get(), r#""1 2""#);
        let (k, raw) = body_to_raw(Vec::new(), true);
        assert_eq!(k, BodyKind::Text);
        assert_eq!(raw.get(), r#""""#);
    }

    #[test]
    fn text_body_is_a_json_string() {
        let (k, raw) = body_to_raw(b"{\"looks\":\"like json\"}".to_vec(), false);
        assert_eq!(k, BodyKind::Text);
        assert_eq!(raw.get(), r#""{\"looks\":\"like json\"}""#);
        let (_, raw) = body_to_raw(b"a\xffb\n".to_vec(), false);
        assert_eq!(raw.get(), "\"a\u{fffd}b\\n\"");
        let (k, raw) = body_to_raw(b"\"a\xff\"".to_vec(), true);
        assert_eq!(k, BodyKind::Text);
        assert_eq!(raw.get(), "\"\\\"a\u{fffd}\\\"\"");
    }
}
