//! Durations and sizes as users write them on the command line, in the environment and in the
//! config file: `15`, `0.5`, `500ms`, `5m`, `7d`; `65536`, `64KiB`, `1MiB`, `1g`.
//!
//! Numbers are read as fixed-point decimals, not floats, so `0.1s` is exactly 100 ms and
//! `1.5KiB` exactly 1536 bytes. The functions fit clap's `value_parser` directly.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A non-negative decimal split into its whole part and its fraction in nanounits
/// (`2.5` is `(2, 500_000_000)`). Digits past the ninth decimal place are dropped.
fn decimal(s: &str) -> Option<(u128, u128)> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || (whole.is_empty() && frac.is_empty()) {
        return None;
    }
    let whole = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()?
    };
    let mut nanos = 0u128;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u128::from(b - b'0') * 10u128.pow(8 - i as u32);
    }
    Some((whole, nanos))
}

/// Splits `12.5ms` into `("12.5", "ms")`, allowing spaces around the unit.
fn number_and_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..at], s[at..].trim_start())
}

/// Parses a duration: a number of seconds (`90`, `0.5`) or a number with a unit: `ms`, `s`,
/// `m` (minutes), `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = || {
        format!(
            "invalid duration {s:?}: use a number of seconds (15, 0.5) \
             or a number with a unit (500ms, 30s, 5m, 1h, 7d)"
        )
    };
    let (number, unit) = number_and_unit(s);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        _ => return Err(hint()),
    };
    let (whole, frac) = decimal(number).ok_or_else(hint)?;
    let total = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac * unit_nanos / NANOS_PER_SEC))
        .ok_or_else(|| format!("duration {s:?} is too long"))?;
    let secs =
        u64::try_from(total / NANOS_PER_SEC).map_err(|_| format!("duration {s:?} is too long"))?;
    // The remainder is below one second, so it fits in u32.
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// Parses a size in bytes: a whole number of bytes, or a number with a binary unit:
/// `KiB`/`k`, `MiB`/`m`, `GiB`/`g` (powers of 1024; `K`, `M`, `G` and a bare `B` also work).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let hint = || {
        format!(
            "invalid size {s:?}: use a number of bytes (65536) \
             or a number with a unit (64KiB, 1MiB, 1GiB, or k, m, g)"
        )
    };
    let (number, unit) = number_and_unit(s);
    let multiplier: u128 = match unit {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "m" | "M" | "MiB" => 1 << 20,
        "g" | "G" | "GiB" => 1 << 30,
        _ => return Err(hint()),
    };
    let (whole, frac) = decimal(number).ok_or_else(hint)?;
    let frac_bytes = frac * multiplier;
    if !frac_bytes.is_multiple_of(NANOS_PER_SEC) {
        return Err(format!("size {s:?} is not a whole number of bytes"));
    }
    whole
        .checked_mul(multiplier)
        .map(|b| b + frac_bytes / NANOS_PER_SEC)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Writes a duration the way [`parse_duration`] reads it, in the largest unit that keeps it
/// whole (`15s`, `100ms`, `5m`, `7d`), or in seconds with a fraction.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400 * NANOS_PER_SEC),
        ("h", 3600 * NANOS_PER_SEC),
        ("m", 60 * NANOS_PER_SEC),
        ("s", NANOS_PER_SEC),
        ("ms", 1_000_000),
    ] {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    let text = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    format!("{}s", text.trim_end_matches('0'))
}

/// Writes a size the way [`parse_size`] reads it, in the largest binary unit that keeps it
/// whole (`1MiB`, `512KiB`), or in bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_values_read_back_as_themselves() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(15),
            Duration::from_secs(300),
            Duration::from_secs(7 * 86_400),
            Duration::from_micros(1500),
            Duration::new(2, 5),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        for n in [0, 1, 1000, 1024, 1 << 20, 512 << 10, 3 << 30, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(256 << 20), "256MiB");
    }

    #[test]
    fn plain_numbers_are_seconds_and_may_have_a_fraction() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.1"), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn every_duration_unit_is_understood() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2500)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in [
            "",
            "s",
            "-1",
            "1.2.3",
            "5 minutes",
            "1H",
            "1e3",
            "ms5",
            "1m30s",
            ".",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("500ms, 30s, 5m, 1h, 7d"), "{bad}: {err}");
        }
        assert!(parse_duration("99999999999999999999999d")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn sizes_are_bytes_or_powers_of_1024() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["", "KiB", "-1", "1KB", "1 kilobyte", "1T", "0x10", "1,000"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("64KiB, 1MiB, 1GiB"), "{bad}: {err}");
        }
        assert!(parse_size("0.5")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_size("17179869184GiB")
            .unwrap_err()
            .contains("too large"));
    }
}
