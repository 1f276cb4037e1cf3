//! Answers that say "try later", "no" or "stop" in their body, as real APIs
//! do: Google's Geocoding API answers over-quota calls with HTTP 200 and
//! `"status": "OVER_QUERY_LIMIT"`.

use std::fmt;

use callpool_protocol::{BodyKind, HttpResponse};
use serde_json::Value;

/// `POINTER=VALUE`: the JSON Pointer `POINTER` into a JSON body holds
/// `VALUE` (a string equal to it, or a number, boolean or null whose JSON
/// text is it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRule {
    pointer: String,
    value: String,
}

impl BodyRule {
    /// Parses `POINTER=VALUE`, e.g. `/status=OVER_QUERY_LIMIT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (pointer, value) = text.split_once('=').ok_or_else(|| {
            format!("{text:?} is not POINTER=VALUE (for example /status=OVER_QUERY_LIMIT)")
        })?;
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(format!(
                "{pointer:?} is not a JSON Pointer: it starts with / (for example /status)"
            ));
        }
        Ok(Self {
            pointer: pointer.to_string(),
            value: value.to_string(),
        })
    }

    fn matches(&self, doc: &Value) -> bool {
        let found = doc.pointer(&self.pointer);
        // `[]`, `{}` or any JSON array or object: compared as JSON, so that
        // `/features=[]` is an empty list (a VALUE never equals a
        // non-scalar otherwise).
        if self.value.starts_with(['[', '{'])
            && let Ok(want) = serde_json::from_str::<Value>(&self.value)
        {
            return found == Some(&want);
        }
        match found {
            Some(Value::String(s)) => *s == self.value,
            Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                serde_json::to_string(v).is_ok_and(|text| text == self.value)
            }
            _ => false,
        }
    }
}

impl fmt::Display for BodyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.pointer, self.value)
    }
}

/// The rules of a run (`--retry-if`, `--fail-if`, `--stop-if`).
#[derive(Debug, Clone, Default)]
pub struct BodyRules {
    /// The answer means "try again later": retried like a 503.
    pub retry_if: Vec<BodyRule>,
    /// The answer is a failure although its status is 2xx.
    pub fail_if: Vec<BodyRule>,
    /// The answer means the whole run should stop (the key is exhausted).
    pub stop_if: Vec<BodyRule>,
}

/// What the rules say of one answer; stop wins over fail, fail over retry.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No rule matched.
    Pass,
    /// A `--retry-if` rule matched.
    Retry(&'a BodyRule),
    /// A `--fail-if` rule matched.
    Fail(&'a BodyRule),
    /// A `--stop-if` rule matched.
    Stop(&'a BodyRule),
}

impl BodyRules {
    /// Whether there are no rules (then bodies are never parsed).
    pub fn is_empty(&self) -> bool {
        self.retry_if.is_empty() && self.fail_if.is_empty() && self.stop_if.is_empty()
    }

    /// Judges an answer. Only JSON bodies are looked at; the body is parsed
    /// only when there are rules.
    pub fn judge(&self, resp: &HttpResponse) -> Verdict<'_> {
        if self.is_empty() || resp.body_kind != BodyKind::Json {
            return Verdict::Pass;
        }
        let Ok(doc) = serde_json::from_str::<Value>(resp.body.get()) else {
            return Verdict::Pass;
        };
        if let Some(r) = self.stop_if.iter().find(|r| r.matches(&doc)) {
            return Verdict::Stop(r);
        }
        if let Some(r) = self.fail_if.iter().find(|r| r.matches(&doc)) {
            return Verdict::Fail(r);
        }
        if let Some(r) = self.retry_if.iter().find(|r| r.matches(&doc)) {
            return Verdict::Retry(r);
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn resp(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Default::default(),
            body_kind: BodyKind::Json,
            body: RawValue::from_string(body.into()).expect("raw"),
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            BodyRule::parse("/status=OK").expect("ok").to_string(),
            "/status=OK"
        );
        assert!(BodyRule::parse("status=OK").is_err());
        assert!(BodyRule::parse("/status").is_err());
        let empty = BodyRule::parse("/features=[]").expect("rule");
        assert!(empty.matches(&serde_json::json!({"features": []})));
        assert!(!empty.matches(&serde_json::json!({"features": [1]})));
        assert!(!empty.matches(&serde_json::json!({})));
        let obj = BodyRule::parse("/meta={}").expect("rule");
        assert!(obj.matches(&serde_json::json!({"meta": {}})));
    }

    #[test]
    fn stop_beats_fail_beats_retry() {
        let rules = BodyRules {
            retry_if: vec![BodyRule::parse("/status=OVER_QUERY_LIMIT").expect("rule")],
            fail_if: vec![BodyRule::parse("/error/code=403").expect("rule")],
            stop_if: vec![BodyRule::parse("/status=OVER_DAILY_LIMIT").expect("rule")],
        };
        assert!(matches!(
            rules.judge(&resp(r#"{"status":"OVER_QUERY_LIMIT"}"#)),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            rules.judge(&resp(r#"{"status":"OVER_DAILY_LIMIT"}"#)),
            Verdict::Stop(_)
        ));
        assert!(matches!(
            rules.judge(&resp(r#"{"status":"OK","error":{"code":403}}"#)),
            Verdict::Fail(_)
        ));
        assert_eq!(rules.judge(&resp(r#"{"status":"OK"}"#)), Verdict::Pass);
        assert_eq!(rules.judge(&resp(r#"[1,2]"#)), Verdict::Pass);
    }
}
