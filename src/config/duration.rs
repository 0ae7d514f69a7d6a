//! Human-readable durations as written in the config file: `"90s"`, `"15m"`,
//! `"12h"`, `"7d"`, `"500ms"` and compounds such as `"1h30m"`.
//!
//! Owns only the text format. [`parse`] turns text into a [`Duration`],
//! [`format`] renders one back; [`HumanDuration`] is the serde wrapper that
//! `raw` uses for every duration key, so a bad value is reported by the TOML
//! parser with its line and column. Whether a duration must be positive, or
//! shorter than another, is decided by `validate`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Units in decreasing order of size: suffix and length of one unit.
const UNITS: [(&str, Duration); 5] = [
    ("d", Duration::from_secs(86_400)),
    ("h", Duration::from_secs(3_600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
];

/// What is wrong with a duration string. Messages never repeat the input;
/// callers add it (durations are not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty (or only whitespace).
    #[error("empty duration; write a number and a unit, e.g. \"90s\"")]
    Empty,
    /// A leading `-`: durations cannot go backwards.
    #[error("negative durations are not allowed")]
    Negative,
    /// A number with no unit after it, e.g. `"90"`.
    #[error("missing unit after {0}; use ms, s, m, h or d, e.g. \"{0}s\"")]
    MissingUnit(String),
    /// A unit this format does not know, e.g. `"5min"` or `"3w"`.
    #[error("unknown unit \"{0}\"; use ms, s, m, h or d")]
    UnknownUnit(String),
    /// A unit with no number before it, or a stray character such as a space.
    #[error("expected a number at \"{0}\"")]
    ExpectedNumber(String),
    /// A decimal point, e.g. `"1.5h"`.
    #[error("fractions are not supported; combine units instead, e.g. \"1h30m\"")]
    Fraction,
    /// Units repeated or out of order, e.g. `"30m1h"` or `"1h1h"`.
    #[error("units must appear at most once, largest first, e.g. \"1d12h\"")]
    UnitOrder,
    /// The value does not fit in a `Duration`.
    #[error("duration is too large")]
    Overflow,
}

/// A [`Duration`] that deserializes from the human-readable form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// Parses `"90s"`, `"15m"`, `"12h"`, `"7d"`, `"500ms"` or a compound such as
/// `"1h30m"` (units at most once each, largest first). `"0s"` is accepted;
/// whether zero is allowed is up to the caller.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.trim().is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    // Index into UNITS of the smallest unit seen so far; the next must be smaller.
    let mut next_allowed = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::ExpectedNumber(rest.to_owned()));
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with('.') {
            return Err(DurationError::Fraction);
        }
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return match after.chars().next() {
                None => Err(DurationError::MissingUnit(number.to_owned())),
                Some(_) => Err(DurationError::ExpectedNumber(after.to_owned())),
            };
        }
        let (unit, after) = after.split_at(unit_len);
        let index = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_owned()))?;
        if index < next_allowed {
            return Err(DurationError::UnitOrder);
        }
        next_allowed = index + 1;
        let count: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        let part = unit_times(UNITS[index].1, count).ok_or(DurationError::Overflow)?;
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
        rest = after;
    }
    Ok(total)
}

/// `unit * count`, or `None` on overflow.
fn unit_times(unit: Duration, count: u64) -> Option<Duration> {
    if unit.subsec_nanos() == 0 {
        unit.as_secs().checked_mul(count).map(Duration::from_secs)
    } else {
        // Only milliseconds have a fractional part.
        Some(Duration::from_millis(count))
    }
}

/// Renders a duration in the same format, largest units first: `5400 s` →
/// `"1h30m"`, `0` → `"0s"`. Sub-millisecond parts are dropped.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, unit) in UNITS {
        let size = unit.as_millis();
        let count = millis / size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            millis %= size;
        }
    }
    out
}

/// Serde helper for `#[serde(deserialize_with = "duration::deserialize")]`
/// on a plain [`Duration`] field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(deserializer).map(|d| d.0)
}

// === impl HumanDuration ===

impl HumanDuration {
    /// Wraps a duration.
    pub const fn new(duration: Duration) -> Self {
        HumanDuration(duration)
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        HumanDuration(duration)
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"90s\", \"15m\", \"12h\" or \"7d\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
        parse(text)
            .map(HumanDuration)
            .map_err(|e| E::custom(format_args!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn single_units() {
        assert_eq!(parse("90s"), Ok(secs(90)));
        assert_eq!(parse("15m"), Ok(secs(900)));
        assert_eq!(parse("12h"), Ok(secs(12 * 3600)));
        assert_eq!(parse("7d"), Ok(secs(7 * 86_400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn compounds() {
        assert_eq!(parse("1h30m"), Ok(secs(5400)));
        assert_eq!(
            parse("1d2h3m4s5ms"),
            Ok(secs(93_784) + Duration::from_millis(5))
        );
        assert_eq!(parse("2m500ms"), Ok(Duration::from_millis(120_500)));
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("  "), Err(DurationError::Empty));
        assert_eq!(parse("-5s"), Err(DurationError::Negative));
        assert_eq!(parse("90"), Err(DurationError::MissingUnit("90".into())));
        assert_eq!(parse("5min"), Err(DurationError::UnknownUnit("min".into())));
        assert_eq!(parse("3w"), Err(DurationError::UnknownUnit("w".into())));
        assert_eq!(parse("h"), Err(DurationError::ExpectedNumber("h".into())));
        assert_eq!(
            parse("1h 30m"),
            Err(DurationError::ExpectedNumber(" 30m".into()))
        );
        assert_eq!(parse("1.5h"), Err(DurationError::Fraction));
        assert_eq!(parse("30m1h"), Err(DurationError::UnitOrder));
        assert_eq!(parse("1h1h"), Err(DurationError::UnitOrder));
        assert_eq!(parse("99999999999999999999s"), Err(DurationError::Overflow));
        assert_eq!(parse("213503982334602d"), Err(DurationError::Overflow));
        assert_eq!(
            parse("18446744073709551615s1ms"),
            Ok(Duration::new(u64::MAX, 1_000_000))
        );
        assert_eq!(
            parse("18446744073709551615s1000ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse("5000000000ms"), Ok(secs(5_000_000)));
    }

    #[test]
    fn messages_are_clear() {
        let e = parse("90").unwrap_err().to_string();
        assert!(e.contains("missing unit"), "{e}");
        let e = parse("5min").unwrap_err().to_string();
        assert!(e.contains("unknown unit \"min\""), "{e}");
    }

    #[test]
    fn round_trips() {
        assert_eq!(format(parse("90s").unwrap()), "1m30s");
        for text in ["1m30s", "15m", "12h", "7d", "500ms", "1h30m", "0s", "1d1ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    #[test]
    fn deserializes_from_toml() {
        #[derive(Deserialize)]
        struct T {
            a: HumanDuration,
            #[serde(deserialize_with = "deserialize")]
            b: Duration,
        }
        let t: T = toml::from_str("a = \"1h30m\"\nb = \"2s\"").unwrap();
        assert_eq!(t.a.get(), secs(5400));
        assert_eq!(t.b, secs(2));
        let err = toml::from_str::<T>("a = \"1x\"\nb = \"2s\"").err().unwrap();
        assert!(
            err.message().contains("unknown unit \"x\""),
            "{}",
            err.message()
        );
        let err = toml::from_str::<T>("a = 5\nb = \"2s\"").err().unwrap();
        assert!(
            err.message().contains("duration string"),
            "{}",
            err.message()
        );
    }
}
