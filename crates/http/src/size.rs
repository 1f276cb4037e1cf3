//! Byte sizes as people write them: `16777216`, `16MiB`, `1MB`, `512 KiB`.

/// Why a byte size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid byte size {input:?}: expected a whole number with an optional unit \
     B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
)]
pub struct ByteSizeError {
    input: String,
}

/// Reads a byte size: a whole number, optionally followed (spaces allowed)
/// by a unit, letter case ignored: `B`; `KB`, `MB`, `GB` (powers of 1000);
/// `KiB`, `MiB`, `GiB` (powers of 1024). `K`, `M`, `G` alone are refused as
/// ambiguous.
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
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
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
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "16M",
            "16 x",
            "99999999999999999999",
            "20000000000GiB",
        ] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
        let msg = parse_byte_size("16M").err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("\"16M\"")));
    }
}
