//! Human durations as written in `wisp.toml` and on the command line:
//! `500ms`, `3s`, `10m`, `6h`, `1d`, or combinations such as `1h30m`.

use std::time::Duration;

/// Parses `3s`, `1h30m`, `250ms`. A bare number is an error: the unit is
/// never guessed.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write it like `3s`, `500ms` or `10m`".into());
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 12 {
            return Err(format!(
                "`{text}` is not a duration; write it like `3s`, `500ms` or `10m`"
            ));
        }
        let value: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad number in `{text}`"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                "`{text}` has no unit; write `{text}s` for seconds or `{text}ms` for milliseconds"
            ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`; use ms, s, m, h or d"
                ))
            }
        };
        total = total.saturating_add(value.saturating_mul(millis));
    }
    let millis = u64::try_from(total).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way `parse` reads it (`3s`, `1500ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("6h"), Ok(Duration::from_secs(21600)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(parse("3").unwrap_err().contains("no unit"));
        assert!(parse("3x").unwrap_err().contains("unknown unit"));
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
        assert!(parse("9999999999999s").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn format_round_trips(ms in 0u64..10_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
