use std::fmt;
use std::net::SocketAddr;

use crate::{CountryCode, ModelError};

/// Longest region id we accept; ids appear in file names, URLs and log lines.
pub const REGION_ID_BYTES_MAX: usize = 32;
/// Most regions one configuration may declare.
pub const REGIONS_MAX: usize = 64;

/// The name of a region (a data centre), such as `in-mumbai`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(String);

impl RegionId {
    /// # Errors
    /// When `id` is empty, longer than [`REGION_ID_BYTES_MAX`], or has characters other than
    /// lowercase ASCII letters, digits and `-`.
    pub fn parse(id: &str) -> Result<RegionId, ModelError> {
        let valid = !id.is_empty()
            && id.len() <= REGION_ID_BYTES_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-');
        if valid {
            Ok(RegionId(id.to_owned()))
        } else {
            Err(ModelError::InvalidRegionId(id.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RegionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RegionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        RegionId::parse(&id).map_err(serde::de::Error::custom)
    }
}

/// One data centre as configured in `config/regions.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub id: RegionId,
    /// Human name, e.g. "Mumbai, India".
    pub name: String,
    /// The country whose law governs the data centre.
    pub country: CountryCode,
    /// Where the embedded default listens for this region.
    pub listen: SocketAddr,
}

/// Every configured region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsConfig {
    #[serde(rename = "region")]
    pub regions: Vec<RegionConfig>,
}

impl RegionsConfig {
    /// # Errors
    /// When the text is not valid TOML of this shape, declares no region, more than
    /// [`REGIONS_MAX`], or the same id twice.
    pub fn from_toml(text: &str) -> Result<RegionsConfig, ModelError> {
        let config: RegionsConfig =
            toml::from_str(text).map_err(|e| ModelError::InvalidPolicy(e.to_string()))?;
        if config.regions.is_empty() {
            return Err(ModelError::InvalidPolicy(
                "no [[region]] is declared".into(),
            ));
        }
        if config.regions.len() > REGIONS_MAX {
            return Err(ModelError::InvalidPolicy(format!(
                "{} regions declared, at most {REGIONS_MAX} allowed",
                config.regions.len()
            )));
        }
        for (i, region) in config.regions.iter().enumerate() {
            if config.regions[..i].iter().any(|r| r.id == region.id) {
                return Err(ModelError::InvalidPolicy(format!(
                    "region {} is declared twice",
                    region.id
                )));
            }
        }
        Ok(config)
    }

    pub fn get(&self, id: &RegionId) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| &r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_ids() {
        assert!(RegionId::parse("in-mumbai").is_ok());
        for bad in ["", "In-Mumbai", "in mumbai", "-x", "a/b", &"x".repeat(33)] {
            assert!(RegionId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn duplicate_regions_are_refused() {
        let text = "[[region]]\nid='a'\nname='A'\ncountry='US'\nlisten='127.0.0.1:1'\n\
                    [[region]]\nid='a'\nname='B'\ncountry='US'\nlisten='127.0.0.1:2'\n";
        let err = RegionsConfig::from_toml(text).unwrap_err();
        assert!(err.to_string().contains("declared twice"), "{err}");
    }
}
