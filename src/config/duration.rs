//! Durations written the way people write them: `"75s"`, `"250ms"`, `"1m 30s"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A [`Duration`] read from a human string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// No duration in a configuration is longer than this: anything past it is a
/// typo, and a deadline that far off overflows a clock.
pub const MAX: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("invalid duration \"{s}\" ({e}); write a number with a unit, such as \"75s\" or \"250ms\"")
        })?;
        if d > MAX {
            return Err(format!(
                "duration \"{s}\" is longer than a year; write a number with a unit, such as \"75s\" or \"250ms\""
            ));
        }
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"75s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; write it as a string with a unit, such as \"{n}s\" or \"{n}ms\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}
