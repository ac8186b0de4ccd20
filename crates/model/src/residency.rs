use std::collections::BTreeMap;

use crate::{CountryCode, ModelError, RegionId, RegionsConfig};

/// Which regions may hold the data of users from which country (`config/residency.toml`).
///
/// The first region listed for a country is its users' home region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidencyPolicy {
    default: RegionId,
    countries: BTreeMap<CountryCode, Vec<RegionId>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResidencyFile {
    default: RegionId,
    #[serde(default)]
    countries: BTreeMap<String, Vec<RegionId>>,
}

impl ResidencyPolicy {
    /// # Errors
    /// When the text is not valid TOML of this shape, a key is not a country code, or a country
    /// lists no region.
    pub fn from_toml(text: &str) -> Result<ResidencyPolicy, ModelError> {
        let file: ResidencyFile =
            toml::from_str(text).map_err(|e| ModelError::InvalidPolicy(e.to_string()))?;
        let mut countries = BTreeMap::new();
        for (code, regions) in file.countries {
            let country = CountryCode::parse(&code)?;
            if regions.is_empty() {
                return Err(ModelError::InvalidPolicy(format!(
                    "{country} lists no region"
                )));
            }
            countries.insert(country, regions);
        }
        Ok(ResidencyPolicy {
            default: file.default,
            countries,
        })
    }

    /// # Errors
    /// When the policy names a region that `regions` does not declare.
    pub fn check_against(&self, regions: &RegionsConfig) -> Result<(), ModelError> {
        let named = std::iter::once(&self.default).chain(self.countries.values().flatten());
        for region in named {
            if regions.get(region).is_none() {
                return Err(ModelError::UnknownRegion {
                    region: region.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Where users of countries the policy does not list live.
    pub fn default_region(&self) -> &RegionId {
        &self.default
    }

    /// The regions allowed to hold data of a user from `country`.
    pub fn allowed_regions(&self, country: CountryCode) -> &[RegionId] {
        self.countries
            .get(&country)
            .map(Vec::as_slice)
            .unwrap_or(std::slice::from_ref(&self.default))
    }

    /// Where a user from `country` lives.
    pub fn home_region(&self, country: CountryCode) -> &RegionId {
        // Invariant: `from_toml` refuses empty region lists, so there is always a first.
        &self.allowed_regions(country)[0]
    }

    pub fn allows(&self, country: CountryCode, region: &RegionId) -> bool {
        self.allowed_regions(country).contains(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
default = "us-oregon"
[countries]
IN = ["in-mumbai"]
SG = ["sg-singapore", "us-oregon"]
"#;

    #[test]
    fn home_and_allowed_regions() {
        let policy = ResidencyPolicy::from_toml(POLICY).unwrap();
        let code = |c| CountryCode::parse(c).unwrap();
        assert_eq!(policy.home_region(code("IN")).as_str(), "in-mumbai");
        assert_eq!(policy.home_region(code("FR")).as_str(), "us-oregon");
        assert!(policy.allows(code("SG"), &RegionId::parse("us-oregon").unwrap()));
        assert!(!policy.allows(code("IN"), &RegionId::parse("us-oregon").unwrap()));
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            "",
            "default = \"x\"\n[countries]\nIND = [\"x\"]",
            "default = \"x\"\n[countries]\nIN = []",
            "default = \"x\"\nextra = 1",
        ] {
            assert!(ResidencyPolicy::from_toml(bad).is_err(), "{bad:?} accepted");
        }
    }
}
