//! Secrets on the command line itself: a key written literally
//! (`--param "key=$K"`, expanded by the shell) is in `ps` and the shell's
//! history, and would be in the "to finish them run: ..." command printed
//! after an interrupted run. This module finds them, warns once at start,
//! and writes that command with each one as `${NAME}` (the environment
//! variable that holds it) or `REDACTED`.

use callpool_pool::RequestDefaults;
use callpool_pool::redact::{REDACTED, is_weak, secret_values};

use crate::cli;

/// One secret option of the command line.
pub(crate) struct OptionSecret {
    /// How messages name it: `--param key`, `--header Authorization`.
    what: String,
    /// Written as is on the command line, not as `${NAME}`.
    literal: bool,
    /// Its value, expanded.
    value: String,
}

/// The secret options of the command line: `--param` and `--header`
/// values whose name is secret, and secret query parameters of `--url`.
pub(crate) fn option_secrets(
    args: &cli::RequestArgs,
    defaults: &RequestDefaults,
) -> Vec<OptionSecret> {
    let redactor = &defaults.redactor;
    let mut out = Vec::new();
    let written = |flag: &str, name: &str| -> bool {
        let raw = match flag {
            "--param" => args
                .param
                .iter()
                .find(|p| p.split_once('=').is_some_and(|(k, _)| k == name)),
            _ => args
                .header
                .iter()
                .find(|h| h.split_once(':').is_some_and(|(k, _)| k.trim() == name)),
        };
        raw.is_some_and(|r| !r.contains("${"))
    };
    for (name, value) in &defaults.params {
        if redactor.is_secret(name) && !value.is_empty() {
            out.push(OptionSecret {
                what: format!("--param {name}"),
                literal: written("--param", name),
                value: value.clone(),
            });
        }
    }
    for (name, value) in &defaults.headers {
        if redactor.is_secret(name) && !value.is_empty() {
            out.push(OptionSecret {
                what: format!("--header {name}"),
                literal: written("--header", name),
                value: value.clone(),
            });
        }
    }
    if let (Some(url), Some(raw)) = (&defaults.base_url, &args.url) {
        for (name, value) in url.query_pairs() {
            if redactor.is_secret(&name) && !value.is_empty() {
                out.push(OptionSecret {
                    what: format!("--url's {name}"),
                    literal: !raw.contains("${"),
                    value: value.into_owned(),
                });
            }
        }
    }
    out
}

/// Every value to hide of these secrets.
pub(crate) fn values(secrets: &[OptionSecret]) -> Vec<String> {
    secrets
        .iter()
        .flat_map(|s| secret_values(&s.value))
        .collect()
}

/// The warnings to print at start: a secret written literally, a secret
/// too short or plain to be hidden inside longer text.
pub(crate) fn warnings(secrets: &[OptionSecret]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        if s.literal {
            out.push(format!(
                "{} is written on the command line, where ps and the shell's history show it: export it and pass it as ${{NAME}} instead (e.g. --param 'key=${{API_KEY}}'); printed commands show it as ${{NAME}} or {REDACTED}",
                s.what
            ));
        }
        if is_weak(&s.value) {
            out.push(format!(
                "the secret of {} is {}: it is hidden wherever it is a whole value, but inside longer text it cannot be told from other data, and is not hidden there",
                s.what,
                if s.value.bytes().all(|b| b.is_ascii_digit()) {
                    "digits only"
                } else {
                    "shorter than 8 characters"
                }
            ));
        }
    }
    out
}

/// `words` (a command line) with every secret value written literally
/// replaced by `${NAME}`, NAME an environment variable that holds exactly
/// that value, or else by `REDACTED`; and the options whose value became
/// `REDACTED`.
pub(crate) fn hide_in_command(
    words: &[String],
    secrets: &[OptionSecret],
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let mut redacted = Vec::new();
    let mut words = words.to_vec();
    // Longest first, so that a value holding another is replaced whole.
    let mut values: Vec<(&OptionSecret, String)> = secrets
        .iter()
        .filter(|s| s.literal)
        .flat_map(|s| secret_values(&s.value).into_iter().map(move |v| (s, v)))
        .collect();
    values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let by_name = |value: &str| {
        env.iter()
            .filter(|(name, v)| v == value && is_var_name(name))
            .map(|(name, _)| name)
            .min()
    };
    // First every value an environment variable holds (`Bearer ${TOKEN}`
    // keeps its `Bearer`), then the rest as REDACTED.
    for pass in [true, false] {
        for (secret, value) in &values {
            let name = by_name(value);
            if name.is_some() != pass || !words.iter().any(|w| w.contains(value.as_str())) {
                continue;
            }
            let replacement = match name {
                Some(name) => format!("${{{name}}}"),
                None => {
                    if !redacted.contains(&secret.what) {
                        redacted.push(secret.what.clone());
                    }
                    REDACTED.to_string()
                }
            };
            for w in &mut words {
                if w.contains(value.as_str()) {
                    *w = w.replace(value.as_str(), &replacement);
                }
            }
        }
    }
    // In the order of the command line.
    redacted.sort_by_key(|what| secrets.iter().position(|s| &s.what == what));
    (words, redacted)
}

/// The environment's variables that are text.
pub(crate) fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(what: &str, value: &str, literal: bool) -> OptionSecret {
        OptionSecret {
            what: what.into(),
            literal,
            value: value.into(),
        }
    }

    fn words_of() -> Vec<String> {
        [
            "supervisor",
            "--param",
            "key=sk-1234567890",
            "--header",
            "Authorization: Bearer tok-abcdefgh",
            "jobs.csv",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn literal_secrets_become_their_variable_or_redacted() {
        let words: Vec<String> = [
            "supervisor",
            "--param",
            "key=sk-1234567890",
            "--header",
            "Authorization: Bearer tok-abcdefgh",
            "jobs.csv",
        ]
        .map(String::from)
        .to_vec();
        let secrets = [
            secret("--param key", "sk-1234567890", true),
            secret("--header Authorization", "Bearer tok-abcdefgh", true),
        ];
        let env = vec![
            ("MY_KEY".to_string(), "sk-1234567890".to_string()),
            ("TOKEN".to_string(), "tok-abcdefgh".to_string()),
            ("1BAD".to_string(), "sk-1234567890".to_string()),
        ];
        let (words, redacted) = hide_in_command(&words, &secrets, &env);
        assert_eq!(words[2], "key=${MY_KEY}");
        assert_eq!(words[4], "Authorization: Bearer ${TOKEN}");
        assert!(redacted.is_empty(), "{redacted:?}");
        let (words, redacted) = hide_in_command(&words_of(), &secrets, &[]);
        assert_eq!(words[2], "key=REDACTED");
        assert_eq!(words[4], "Authorization: REDACTED");
        assert_eq!(redacted, ["--param key", "--header Authorization"]);
    }

    #[test]
    fn warns_of_literal_and_weak_secrets() {
        let w = warnings(&[
            secret("--param key", "2024", false),
            secret("--param token", "a-long-enough-one", true),
        ]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("--param key is digits only"), "{w:?}");
        assert!(
            w[1].contains("--param token is written on the command line"),
            "{w:?}"
        );
    }
}
