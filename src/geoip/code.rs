//! [`CountryCode`]: an ISO 3166-1 alpha-2 code stored inline (2 bytes, `Copy`).

use std::fmt;
use std::str::FromStr;

/// An ISO 3166-1 alpha-2 country code, always two uppercase ASCII letters.
///
/// Parsing accepts either case (`"jp"` → `JP`) so configuration files are
/// forgiving; anything that is not exactly two ASCII letters is refused.
/// Databases also carry pseudo-codes such as `EU`/`AP` (MaxMind legacy) or
/// `ZZ` (unknown); they are kept as-is because they are well-formed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

/// Why a string is not a [`CountryCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid country code {input:?}: expected two ASCII letters (ISO 3166-1 alpha-2), e.g. \"US\", \"JP\", \"BR\"")]
pub struct InvalidCountryCode {
    /// The rejected input.
    pub input: String,
}

impl CountryCode {
    /// Builds a code from two bytes; `None` unless both are ASCII letters.
    pub const fn from_bytes(b: [u8; 2]) -> Option<CountryCode> {
        if b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
            Some(CountryCode([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
        } else {
            None
        }
    }

    /// Parses a code found in a database record; `None` if malformed.
    /// No allocation.
    #[inline]
    pub fn from_db(s: &str) -> Option<CountryCode> {
        match s.as_bytes() {
            [a, b] => CountryCode::from_bytes([*a, *b]),
            _ => None,
        }
    }

    /// The code as `&str`, e.g. `"US"`.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Invariant: two ASCII letters, hence valid UTF-8.
        match std::str::from_utf8(&self.0) {
            Ok(s) => s,
            Err(_) => "??",
        }
    }

    /// The two uppercase ASCII bytes.
    #[inline]
    pub const fn as_bytes(&self) -> [u8; 2] {
        self.0
    }
}

impl FromStr for CountryCode {
    type Err = InvalidCountryCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CountryCode::from_db(s.trim()).ok_or_else(|| InvalidCountryCode { input: s.to_owned() })
    }
}

impl TryFrom<&str> for CountryCode {
    type Error = InvalidCountryCode;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl serde::Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CountryCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a two-letter ISO 3166-1 alpha-2 country code such as \"US\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CountryCode, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}
