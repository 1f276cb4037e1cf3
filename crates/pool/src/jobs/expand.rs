//! `${NAME}` in job strings and options, from the environment, so that an
//! API key never has to be written into a jobs file.

/// Replaces every `${NAME}` in `text` (NAME: a letter or `_`, then letters,
/// digits or `_`) with the value of the environment variable NAME. Any
/// other `$` is left as it is. A variable that is not set is an error that
/// names it.
pub fn expand_env(text: &str) -> Result<String, String> {
    expand_with(text, |name| std::env::var(name).ok())
}

/// Whether `text` holds a `${NAME}` that [`expand_env`] would replace: its
/// value then comes from the environment, which is where secrets are kept.
pub fn has_env_ref(text: &str) -> bool {
    text.contains("${") && expand_with(text, |_| None).is_err()
}

/// [`expand_env`] with another source of values (for tests).
pub fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after
            .char_indices()
            .take_while(|&(i, c)| {
                c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
            .count();
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            let value = lookup(name).ok_or_else(|| {
                format!("environment variable {name} is not set (used as ${{{name}}})")
            })?;
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_refs() {
        assert!(has_env_ref("Bearer ${TOKEN}") && has_env_ref("${_A1}"));
        assert!(!has_env_ref("plain") && !has_env_ref("$KEY") && !has_env_ref("${ not}"));
        assert!(!has_env_ref("${1A}") && !has_env_ref("${"));
    }

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_known_names_and_leaves_other_dollars() {
        assert_eq!(
            expand_with("a=${KEY}&b=$KEY&c=${", env),
            Ok("a=s3cret&b=$KEY&c=${".into())
        );
        assert_eq!(
            expand_with("${ not a name}", env),
            Ok("${ not a name}".into())
        );
        assert_eq!(expand_with("plain", env), Ok("plain".into()));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = expand_with("k=${NOPE_1}", env).expect_err("missing");
        assert!(err.contains("NOPE_1 is not set"), "{err}");
    }
}
