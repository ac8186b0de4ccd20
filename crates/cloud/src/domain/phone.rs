use sovereign_model::CountryCode;

use crate::error::ApiError;

/// Longest input we hand to the phone number parser.
const PHONE_INPUT_BYTES_MAX: usize = 32;

/// A valid phone number in international form, kept as E.164 (`+919812345678`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    country: CountryCode,
}

impl PhoneNumber {
    /// Parses a number written in international format, with or without separators.
    ///
    /// # Errors
    /// [`ApiError::InvalidPhone`] when it is not a valid, assigned-looking number of a country.
    pub fn parse(input: &str) -> Result<PhoneNumber, ApiError> {
        let invalid =
            || ApiError::InvalidPhone(input.chars().take(PHONE_INPUT_BYTES_MAX).collect());
        if input.len() > PHONE_INPUT_BYTES_MAX || !input.trim_start().starts_with('+') {
            return Err(invalid());
        }
        let number = phonenumber::parse(None, input).map_err(|_| invalid())?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid());
        }
        let country = number
            .country()
            .id()
            .and_then(|id| CountryCode::parse(id.as_ref()).ok())
            .ok_or_else(invalid)?;
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        Ok(PhoneNumber { e164, country })
    }

    pub fn as_e164(&self) -> &str {
        &self.e164
    }

    /// The country the number belongs to, from its E.164 prefix.
    pub fn country(&self) -> CountryCode {
        self.country
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("+91 98123 45678", "+919812345678", "IN"),
            ("+86 138 0013 8000", "+8613800138000", "CN"),
            ("+1 (503) 555-0123", "+15035550123", "US"),
            ("+55 11 91234-5678", "+5511912345678", "BR"),
        ];
        for (input, e164, country) in cases {
            let phone = PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(phone.as_e164(), e164);
            assert_eq!(phone.country().as_str(), country);
        }
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in [
            "",
            "12345",
            "9812345678",
            "+",
            "+0000",
            "+91 12",
            "hello",
            "+1 555 0123 4567 8901 2345 6789",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
