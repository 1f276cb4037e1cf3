//! Keeping secrets (API keys, tokens, passwords) out of result files, the
//! joblog and log lines.
//!
//! Secret query parameters and headers are known by name. Their values are
//! sent to the API unchanged, but every copy that the supervisor writes is
//! replaced by `REDACTED`: in the recorded URL, and anywhere else the value
//! shows up (an API that echoes the key in its answer, an error message).

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// Parameter and header names whose values are secret unless the user says
/// otherwise (compared without regard to case).
pub const DEFAULT_SECRET_NAMES: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "password",
    "authorization",
];

/// Values shorter than this are not looked for inside longer text: replacing
/// every `1` in a result because a parameter named `token` was `1` would
/// destroy the result and protect nothing.
const MIN_SCRUB_LEN: usize = 4;

/// Which names are secret.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(std::iter::empty::<String>())
    }
}

impl Redactor {
    /// The default names plus `extra` (`--redact`).
    pub fn new(extra: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut names: Vec<String> = DEFAULT_SECRET_NAMES.iter().map(|s| s.to_string()).collect();
        names.extend(extra.into_iter().map(|s| s.as_ref().to_ascii_lowercase()));
        Self { names }
    }

    /// Whether a query string names a secret parameter. It looks at the raw
    /// keys and decodes only a key that is encoded, so that the common query
    /// with no secret costs a scan of its keys, not a decode of every pair
    /// (this runs twice per job: in the check and when the job is sent).
    pub fn query_has_secret(&self, query: &str) -> bool {
        query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if key.bytes().any(|b| b == b'%' || b == b'+') {
                url::form_urlencoded::parse(pair.as_bytes()).any(|(k, _)| self.is_secret(&k))
            } else {
                self.is_secret(key)
            }
        })
    }

    /// Whether a parameter or header of this name holds a secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The values to hide for one secret parameter or header: the value, and
/// for a header such as `Bearer abc` the credential alone. Every spelling
/// of them is hidden by [`mask_text`] and [`mask_json`].
pub fn secret_values(value: &str) -> Vec<String> {
    let mut values = vec![value.to_string()];
    if let Some((_, cred)) = value.split_once(' ') {
        values.push(cred.trim().to_string());
    }
    values.retain(|v| !v.is_empty());
    values
}

/// Whether a secret is too short, or too plain, to be hidden inside text
/// reliably: shorter than 8 characters, or digits only. Such a value is
/// still hidden where it stands as a whole value; the supervisor warns.
pub fn is_weak(value: &str) -> bool {
    value.chars().count() < 8 || value.bytes().all(|b| b.is_ascii_digit())
}

/// Every secret of `secrets` hidden in `text`, in each spelling a server,
/// a log or an error can give it: as is; JSON-escaped (`\/`, `\uXXXX` of
/// any or all characters); percent-encoded in upper or lower case, in
/// part or whole; form-encoded (`+` for a space); base64, plain or
/// URL-safe, at any alignment. A text that *is* a secret is hidden
/// whatever its length; inside longer text, only secrets of at least
/// [`MIN_SCRUB_LEN`] characters are looked for (a `1` is everywhere).
pub fn mask_text<'a>(text: &'a str, secrets: &[String]) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if secrets.is_empty() || text.is_empty() {
        return Cow::Borrowed(text);
    }
    if secrets.iter().any(|s| s == text) {
        return Cow::Owned(REDACTED.to_string());
    }
    let spans = find_spans(text, secrets);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Byte ranges of `text` that spell a secret, sorted and merged, each on
/// character boundaries.
fn find_spans(text: &str, secrets: &[String]) -> Vec<(usize, usize)> {
    let norm = Normalized::new(text);
    let mut spans = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SCRUB_LEN) {
        for pattern in std::iter::once(secret.clone()).chain(base64_cores(secret.as_bytes())) {
            norm.find_all(pattern.as_bytes(), &mut spans);
        }
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Widen to character boundaries: a span may start or end inside a
    // multi-byte character only through a decoded escape, which is ASCII,
    // so this is a guard, not a case that happens.
    for (s, e) in &mut merged {
        while !text.is_char_boundary(*s) {
            *s -= 1;
        }
        while !text.is_char_boundary(*e) {
            *e += 1;
        }
    }
    merged
}

/// A text with its escapes decoded (`%XX`, `\uXXXX`, `\/` and the other
/// JSON escapes), each decoded byte remembering the span of the text it
/// came from, so that a match in the decoded bytes masks the text as
/// written.
struct Normalized {
    bytes: Vec<u8>,
    /// For each decoded byte, the range of `text` it came from.
    from: Vec<(usize, usize)>,
}

impl Normalized {
    fn new(text: &str) -> Self {
        let t = text.as_bytes();
        let mut bytes = Vec::with_capacity(t.len());
        let mut from = Vec::with_capacity(t.len());
        let mut i = 0;
        while i < t.len() {
            let (decoded, len) = decode_at(t, i);
            for b in decoded.iter() {
                bytes.push(*b);
                from.push((i, i + len));
            }
            i += len;
        }
        Self { bytes, from }
    }

    /// Adds the text span of every occurrence of `pattern`; a `+` in the
    /// text also stands for a space (form encoding).
    fn find_all(&self, pattern: &[u8], spans: &mut Vec<(usize, usize)>) {
        let (n, m) = (self.bytes.len(), pattern.len());
        if m == 0 || m > n {
            return;
        }
        let same = |a: u8, b: u8| a == b || (a == b'+' && b == b' ');
        let mut i = 0;
        while i + m <= n {
            if same(self.bytes[i], pattern[0])
                && self.bytes[i..i + m]
                    .iter()
                    .zip(pattern)
                    .all(|(&a, &b)| same(a, b))
            {
                spans.push((self.from[i].0, self.from[i + m - 1].1));
                i += m;
            } else {
                i += 1;
            }
        }
    }
}

/// The bytes the escape at `t[i..]` stands for, and its length in `t`;
/// a byte that starts no escape stands for itself.
fn decode_at(t: &[u8], i: usize) -> (smallbytes::Bytes, usize) {
    let hex = |b: u8| (b as char).to_digit(16);
    match t[i] {
        b'%' if i + 2 < t.len() => {
            if let (Some(h), Some(l)) = (hex(t[i + 1]), hex(t[i + 2])) {
                return (smallbytes::Bytes::one((h * 16 + l) as u8), 3);
            }
        }
        b'\\' if i + 1 < t.len() => {
            let simple = match t[i + 1] {
                b'/' => Some(b'/'),
                b'\\' => Some(b'\\'),
                b'"' => Some(b'"'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                _ => None,
            };
            if let Some(b) = simple {
                return (smallbytes::Bytes::one(b), 2);
            }
            if let Some(first) = unicode_escape(t, i) {
                // A surrogate pair is two escapes for one character.
                let (c, len) = if (0xD800..0xDC00).contains(&first)
                    && let Some(second) = unicode_escape(t, i + 6)
                    && (0xDC00..0xE000).contains(&second)
                {
                    (0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00), 12)
                } else {
                    (first, 6)
                };
                if let Some(c) = char::from_u32(c) {
                    return (smallbytes::Bytes::char(c), len);
                }
            }
        }
        _ => {}
    }
    (smallbytes::Bytes::one(t[i]), 1)
}

/// The code unit of a `\uXXXX` escape at `t[i..]`.
fn unicode_escape(t: &[u8], i: usize) -> Option<u32> {
    if t.get(i) != Some(&b'\\') || t.get(i + 1) != Some(&b'u') {
        return None;
    }
    let digits = t.get(i + 2..i + 6)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// Up to four bytes without an allocation.
mod smallbytes {
    pub(super) struct Bytes {
        buf: [u8; 4],
        len: usize,
    }
    impl Bytes {
        pub(super) fn one(b: u8) -> Self {
            Self {
                buf: [b, 0, 0, 0],
                len: 1,
            }
        }
        pub(super) fn char(c: char) -> Self {
            let mut buf = [0; 4];
            let len = c.encode_utf8(&mut buf).len();
            Self { buf, len }
        }
        pub(super) fn iter(&self) -> std::slice::Iter<'_, u8> {
            self.buf[..self.len].iter()
        }
    }
}

/// The parts of the base64 encodings of `secret` that are the same
/// wherever it stands in a longer encoded text (as `user:key` does in a
/// Basic credential): at each of the three alignments, the characters that
/// only the secret's bits make up; standard and URL-safe alphabets.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for k in 0..3usize {
        let mut input = vec![0u8; k];
        input.extend_from_slice(secret);
        let encoded = base64(&input);
        let first = (8 * k).div_ceil(6);
        let last = 8 * (k + secret.len()) / 6;
        if last > first && last - first >= 6 {
            let core = encoded[first..last].to_string();
            cores.push(core.replace('+', "-").replace('/', "_"));
            cores.push(core);
        }
    }
    cores.sort();
    cores.dedup();
    cores
}

/// Standard base64 without padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `json` (a whole JSON text, as serde_json writes it) with every secret
/// hidden, or `None` when there is none. It works on values, never by
/// splicing text into JSON, so the result is always valid JSON: each
/// string (keys too) is decoded, masked with [`mask_text`] and encoded
/// again; a number whose digits are a secret, or hold one of at least
/// [`MIN_SCRUB_LEN`] digits, becomes the string `"REDACTED"`. Everything
/// else is copied byte for byte, numbers' exact text included.
pub fn mask_json(json: &[u8], secrets: &[String]) -> Option<Vec<u8>> {
    use crate::json_text::{Token, decode_str, rewrite};
    if secrets.is_empty() {
        return None;
    }
    rewrite(json, false, |token| match token {
        Token::Str(raw) => match mask_text(&decode_str(raw)?, secrets) {
            std::borrow::Cow::Owned(m) => serde_json::to_vec(&m).ok(),
            std::borrow::Cow::Borrowed(_) => None,
        },
        Token::Num(digits) => {
            let hit = secrets.iter().any(|s| {
                s.as_bytes() == digits
                    || (s.len() >= MIN_SCRUB_LEN
                        && digits.windows(s.len()).any(|w| w == s.as_bytes()))
            });
            hit.then(|| format!("\"{REDACTED}\"").into_bytes())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_extra_names() {
        let r = Redactor::new(["X-Session"]);
        assert!(r.is_secret("key") && r.is_secret("Authorization") && r.is_secret("x-session"));
        assert!(!r.is_secret("address"));
    }

    #[test]
    fn finds_secret_keys_in_raw_queries() {
        let r = Redactor::new(["sig"]);
        assert!(r.query_has_secret("address=1&KEY=abc"));
        assert!(r.query_has_secret("a=1&sig"));
        // Encoded key: `api%5Fkey` is `api_key`.
        assert!(r.query_has_secret("a=1&api%5Fkey=x"));
        assert!(!r.query_has_secret("address=key+street&monkey=1&keys=2"));
        assert!(!r.query_has_secret(""));
    }

    /// Every spelling of a secret, as servers and logs give it.
    fn spellings(secret: &str) -> Vec<String> {
        let json = serde_json::to_string(secret).unwrap();
        let inner = &json[1..json.len() - 1];
        let pct: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let all_u: String = secret
            .chars()
            .map(|c| format!("\\u{:04X}", c as u32))
            .collect();
        vec![
            secret.to_string(),
            inner.replace('/', "\\/"),
            all_u,
            pct.clone(),
            pct.to_uppercase(),
            form.to_lowercase(),
            form,
            base64(format!("user:{secret}").as_bytes()),
            base64(secret.as_bytes())
                .replace('+', "-")
                .replace('/', "_"),
        ]
    }

    #[test]
    fn every_spelling_is_masked() {
        for secret in ["sk-live/abc+def ghi", "p@ss/w0rd?&=", "kéy-ünï-42"] {
            let secrets = secret_values(secret);
            for spelled in spellings(secret) {
                let text = format!("before {spelled} after");
                let out = mask_text(&text, &secrets);
                assert!(out.contains(REDACTED), "{secret:?} as {spelled:?}: {out}");
                assert!(
                    out.starts_with("before ") && out.ends_with(" after"),
                    "{out}"
                );
                for s in spellings(secret) {
                    assert!(!out.contains(&s), "{secret:?} left as {s:?} in {out}");
                }
            }
        }
    }

    #[test]
    fn json_stays_valid_and_numbers_exact() {
        let secrets = secret_values("2024");
        let json = br#"{"year":2024,"n":520245,"big":12345678901234567890123,"s":"2024","t":"in 2024!","f":1.50}"#;
        let out = mask_json(json, &secrets).expect("masked");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["year"], REDACTED);
        assert_eq!(v["s"], REDACTED);
        assert_eq!(v["t"], "in REDACTED!");
        assert_eq!(v["n"], REDACTED);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("12345678901234567890123") && text.contains("1.50"),
            "{text}"
        );
        // A short secret is masked only where it is the whole value.
        let out = mask_json(br#"{"a":"1","b":"x1y","c":1,"d":12}"#, &["1".into()]).unwrap();
        assert_eq!(out, br#"{"a":"REDACTED","b":"x1y","c":"REDACTED","d":12}"#);
        assert!(mask_json(br#"{"a":"b"}"#, &secrets).is_none());
    }

    #[test]
    fn escaped_echoes_in_json_are_masked() {
        let secrets = secret_values("Bearer sk/ab\"cd");
        let json = br#"{"echo":"Bearer sk\/ab\"cd","u":"\u0073\u006b/ab\"cd"}"#;
        let out = String::from_utf8(mask_json(json, &secrets).unwrap()).unwrap();
        assert_eq!(out, r#"{"echo":"REDACTED","u":"REDACTED"}"#);
    }

    #[test]
    fn weak_secrets() {
        assert!(is_weak("abc") && is_weak("123456789") && !is_weak("sk-12345"));
    }

    #[test]
    fn short_values_are_not_scrubbed_from_text() {
        assert_eq!(mask_text("a 1 b", &["1".into()]), "a 1 b");
        assert_eq!(mask_text("1", &["1".into()]), REDACTED);
    }
}
