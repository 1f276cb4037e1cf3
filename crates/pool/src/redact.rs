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

/// Values shorter than this are not scrubbed from free text: replacing
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

/// The forms under which a secret value can appear in what the supervisor
/// writes: as is, URL-encoded, JSON-escaped; and for a header such as
/// `Bearer abc`, the credential alone.
pub fn secret_forms(value: &str) -> Vec<String> {
    let mut bases = vec![value.to_string()];
    if let Some((_, cred)) = value.split_once(' ') {
        bases.push(cred.trim().to_string());
    }
    let mut forms = Vec::new();
    for b in bases {
        forms.push(url::form_urlencoded::byte_serialize(b.as_bytes()).collect::<String>());
        if let Ok(json) = serde_json::to_string(&b) {
            forms.push(json[1..json.len() - 1].to_string());
        }
        forms.push(b);
    }
    forms.retain(|f| f.len() >= MIN_SCRUB_LEN);
    forms.sort();
    forms.dedup();
    // Longest first, so that a form containing another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// Replaces every occurrence of every secret in `text`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
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

    #[test]
    fn scrubs_every_form() {
        let forms = secret_forms("Bearer a+b/c\"d");
        let text = r#"{"h":"Bearer a+b/c\"d","q":"Bearer+a%2Bb%2Fc%22d","t":"a+b/c\"d"}"#;
        let out = scrub(text, &forms);
        assert!(!out.contains("a+b") && !out.contains("a%2Bb"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }

    #[test]
    fn short_values_are_not_scrubbed_from_text() {
        assert!(secret_forms("1").is_empty());
    }
}
