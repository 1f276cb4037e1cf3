//! Byte sizes as people write them: `16777216`, `16MiB`, `1MB`, `512 KiB`,
//! and `100M`, `2G`, `512k` as docker, systemd and `sort -S` read them.

/// Why a byte size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid byte size {input:?}: expected a whole number with an optional unit: \
     K, M, G, T or KiB, MiB, GiB, TiB (powers of 1024, e.g. 100M), or KB, MB, GB, TB \
     (powers of 1000)"
)]
pub struct ByteSizeError {
    input: String,
}

/// Reads a byte size: a whole number, optionally followed (spaces allowed)
/// by a unit, letter case ignored: `B`; `K`, `M`, `G`, `T` and `KiB`,
/// `MiB`, `GiB`, `TiB` (powers of 1024, as docker and systemd read `100M`);
/// `KB`, `MB`, `GB`, `TB` (powers of 1000).
pub fn parse_byte_size(input: &str) -> Result<u64, ByteSizeError> {
    let err = || ByteSizeError {
        input: input.to_owned(),
    };
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(err());
    }
    let n: u64 = number.parse().map_err(|_| err())?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(multiplier).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_units() {
        assert_eq!(parse_byte_size("16777216"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_byte_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_byte_size("16 mib"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_byte_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_byte_size("2kb"), Ok(2000));
        assert_eq!(parse_byte_size("3KiB"), Ok(3072));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("100B"), Ok(100));
        assert_eq!(parse_byte_size("100M"), Ok(100 << 20));
        assert_eq!(parse_byte_size("2G"), Ok(2 << 30));
        assert_eq!(parse_byte_size("512k"), Ok(512 << 10));
        assert_eq!(parse_byte_size("32MB"), Ok(32_000_000));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "16 x",
            "16Mb/s",
            "99999999999999999999",
            "20000000000GiB",
        ] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
        let msg = parse_byte_size("16X").err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("\"16X\"") && m.contains("100M")));
    }
}
