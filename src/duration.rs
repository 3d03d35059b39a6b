//! Go-style durations (`10m`, `1h30m`, `90s`, `1.5h`) as Kubernetes users write them in
//! `spec.refreshBefore`. The CRD schema carries the same grammar as a regex (see
//! [`GO_DURATION_PATTERN`]) so the API server rejects what this parser would.

use std::time::Duration;

/// The grammar of [`parse_go_duration`] as a JSON-schema pattern, for the CRD.
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("{0:?} is not a duration; write it like 10m, 1h30m or 90s")]
    Malformed(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a Go `time.ParseDuration` string without sign (negative durations make no sense here).
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(input.to_owned());
    if input.is_empty() {
        return Err(malformed());
    }
    let mut rest = input;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(malformed()),
        };
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) if !w.is_empty() && !f.is_empty() => (w, f),
            Some(_) => return Err(malformed()),
            None if !number.is_empty() => (number, ""),
            None => return Err(malformed()),
        };
        let whole: u128 = whole
            .parse()
            .map_err(|_| DurationError::Overflow(input.to_owned()))?;
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
        // Fractions beyond nanosecond precision are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in frac.chars().take(20) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).ok_or_else(malformed)?) * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
        rest = tail;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_owned()))?;
    // The remainder is below 1e9, so it fits in u32.
    let sub = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// Formats a duration the way Go prints it (`1h30m0s` style is noisy; we print the compact form).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_input_parses_or_is_a_clear_error(input in "[0-9.a-zµ ]{0,40}") {
            match parse_go_duration(&input) {
                Ok(_) => {}
                Err(e) => {
                    let quoted = format!("{:?}", input);
                    prop_assert!(e.to_string().contains(&quoted));
                }
            }
        }

        #[test]
        fn huge_numbers_overflow_cleanly(digits in "[1-9][0-9]{15,60}", unit in "(ns|us|ms|s|m|h)") {
            let _ = parse_go_duration(&format!("{digits}{unit}"));
        }
    }

    #[test]
    fn parses_what_go_parses() {
        let cases = [
            ("10m", Duration::from_secs(600)),
            ("1h30m", Duration::from_secs(5400)),
            ("90s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            ("300ms", Duration::from_millis(300)),
            ("2h45m30s", Duration::from_secs(2 * 3600 + 45 * 60 + 30)),
            ("1µs", Duration::from_micros(1)),
            ("1us", Duration::from_micros(1)),
            ("5ns", Duration::from_nanos(5)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for input in [
            "",
            "10",
            "m",
            "10x",
            "1.m",
            ".5m",
            "-10m",
            "10 m",
            "1d",
            "ten minutes",
        ] {
            assert!(
                matches!(parse_go_duration(input), Err(DurationError::Malformed(_))),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        // The API server validates with the regex, the reconciler with the parser: they must
        // accept and reject the same strings.
        let re = regex::Regex::new(GO_DURATION_PATTERN).expect("pattern compiles");
        let corpus = [
            "10m", "1h30m", "1.5h", "300ms", "0s", "1µs", "", "10", "m", "10x", "1.m", ".5m",
            "-10m", "10 m", "1d", "1h1h", "5ns",
        ];
        for input in corpus {
            assert_eq!(
                re.is_match(input),
                parse_go_duration(input).is_ok(),
                "regex and parser disagree on {input:?}"
            );
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_go_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(5430)), "1h30m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
