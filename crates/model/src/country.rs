use std::fmt;

use crate::ModelError;

/// An ISO 3166-1 alpha-2 country code, stored upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// # Errors
    /// When `code` is not exactly two ASCII letters.
    pub fn parse(code: &str) -> Result<CountryCode, ModelError> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => Err(ModelError::InvalidCountryCode(code.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Invariant: both bytes are ASCII letters (checked in `parse`), so this is valid UTF-8.
        std::str::from_utf8(&self.0).expect("country code is ASCII")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        CountryCode::parse(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_letters_only() {
        assert_eq!(CountryCode::parse("in").unwrap().as_str(), "IN");
        for bad in ["", "I", "IND", "1N", "É"] {
            assert!(CountryCode::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
