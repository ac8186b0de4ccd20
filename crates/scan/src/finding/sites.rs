//! Named destinations the IP-to-country database cannot place: lab networks, loopback, a
//! region's test servers. A finding whose remote party is a site takes the site's country (and
//! `cross_border` from it) and carries the site's name.
//!
//! ```toml
//! [[site]]
//! address = "127.0.0.1:8445"   # "IP" or "IP:PORT" (IPv6 as "[::1]:8445")
//! name = "in-mumbai"
//! country = "IN"               # ISO 3166 alpha-2
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use sovereign_model::CountryCode;

use crate::ScanError;

/// Largest sites file we read.
pub const SITES_BYTES_MAX: usize = 1 << 20;
/// Most sites one run may name.
pub const SITES_MAX: usize = 10_000;
/// Longest site name, in bytes.
pub const SITE_NAME_BYTES_MAX: usize = 128;

/// Where a site is: one address, or one port of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteAddress {
    Ip(IpAddr),
    Socket(SocketAddr),
}

impl SiteAddress {
    /// Parses `"IP"` or `"IP:PORT"` (an IPv6 address with a port as `"[::1]:8445"`).
    ///
    /// # Errors
    /// A message naming the text when it is neither.
    pub fn parse(text: &str) -> Result<SiteAddress, String> {
        let text = text.trim();
        if let Ok(socket) = text.parse::<SocketAddr>() {
            return Ok(SiteAddress::Socket(socket));
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        bare.parse::<IpAddr>().map(SiteAddress::Ip).map_err(|_| {
            format!(
                "address {text:?} is not \"IP\" or \"IP:PORT\" (IPv6 with a port as \"[::1]:8445\")"
            )
        })
    }
}

impl std::fmt::Display for SiteAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteAddress::Ip(ip) => write!(f, "{ip}"),
            SiteAddress::Socket(socket) => write!(f, "{socket}"),
        }
    }
}

/// One named destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub address: SiteAddress,
    pub name: String,
    pub country: CountryCode,
}

impl Site {
    /// Builds a site from its three fields as a file or a config gives them.
    ///
    /// # Errors
    /// A message when the address is not `IP` or `IP:PORT`, the name is empty or longer than
    /// [`SITE_NAME_BYTES_MAX`], or the country is not two letters.
    pub fn parse(address: &str, name: &str, country: &str) -> Result<Site, String> {
        let address = SiteAddress::parse(address)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("site {address} has an empty name"));
        }
        if name.len() > SITE_NAME_BYTES_MAX {
            return Err(format!(
                "site {address}: name is {} bytes, at most {SITE_NAME_BYTES_MAX} allowed",
                name.len()
            ));
        }
        let country = CountryCode::parse(country.trim()).map_err(|_| {
            format!("site {name} ({address}): country {country:?} is not an ISO 3166 alpha-2 code")
        })?;
        Ok(Site {
            address,
            name: name.to_owned(),
            country,
        })
    }
}

/// Every site of a run, looked up by `IP:PORT` first, then by `IP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sites {
    list: Vec<Site>,
    by_socket: HashMap<SocketAddr, usize>,
    by_ip: HashMap<IpAddr, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SitesFile {
    #[serde(default)]
    site: Vec<SiteEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteEntry {
    address: String,
    name: String,
    country: String,
}

impl Sites {
    /// # Errors
    /// A message when two sites have the same address, or there are more than [`SITES_MAX`].
    pub fn new(sites: Vec<Site>) -> Result<Sites, String> {
        if sites.len() > SITES_MAX {
            return Err(format!(
                "{} sites, at most {SITES_MAX} allowed",
                sites.len()
            ));
        }
        let mut out = Sites::default();
        for (index, site) in sites.into_iter().enumerate() {
            let previous = match site.address {
                SiteAddress::Ip(ip) => out.by_ip.insert(ip, index),
                SiteAddress::Socket(socket) => out.by_socket.insert(socket, index),
            };
            if let Some(previous) = previous {
                return Err(format!(
                    "address {} is given twice (sites {} and {})",
                    site.address, out.list[previous].name, site.name
                ));
            }
            out.list.push(site);
        }
        Ok(out)
    }

    /// Parses a sites file; `origin` names it in error messages (usually its path).
    ///
    /// # Errors
    /// When the text is larger than [`SITES_BYTES_MAX`], is not TOML of this shape (an unknown
    /// key is named), or a site is invalid or repeated.
    pub fn from_toml(text: &str, origin: &str) -> Result<Sites, ScanError> {
        let fail = |message: String| ScanError::Sites {
            path: origin.to_owned(),
            message,
        };
        if text.len() > SITES_BYTES_MAX {
            return Err(fail(format!(
                "{} bytes, at most {SITES_BYTES_MAX} allowed",
                text.len()
            )));
        }
        let file: SitesFile = toml::from_str(text).map_err(|e| fail(e.message().to_owned()))?;
        let sites = file
            .site
            .iter()
            .map(|s| Site::parse(&s.address, &s.name, &s.country))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        Sites::new(sites).map_err(fail)
    }

    /// The site `remote` belongs to: its `IP:PORT` if a site names it, else its `IP`.
    pub fn find(&self, remote: SocketAddr) -> Option<&Site> {
        let index = self
            .by_socket
            .get(&remote)
            .or_else(|| self.by_ip.get(&remote.ip()))?;
        self.list.get(*index)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(text: &str) -> Result<Sites, String> {
        Sites::from_toml(text, "sites.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn ip_port_wins_over_ip() {
        let s = sites(
            "[[site]]\naddress = \"127.0.0.1\"\nname = \"lab\"\ncountry = \"DE\"\n\
             [[site]]\naddress = \"127.0.0.1:8445\"\nname = \"in-mumbai\"\ncountry = \"in\"\n\
             [[site]]\naddress = \"[::1]:8446\"\nname = \"sg-singapore\"\ncountry = \"SG\"\n",
        )
        .unwrap();
        let find = |a: &str| s.find(a.parse().unwrap()).map(|s| s.name.as_str());
        assert_eq!(find("127.0.0.1:8445"), Some("in-mumbai"));
        assert_eq!(find("127.0.0.1:9999"), Some("lab"));
        assert_eq!(find("[::1]:8446"), Some("sg-singapore"));
        assert_eq!(find("[::1]:8445"), None);
        assert_eq!(find("10.0.0.1:8445"), None);
        let mumbai = s.find("127.0.0.1:8445".parse().unwrap()).unwrap();
        assert_eq!(mumbai.country.as_str(), "IN");
    }

    #[test]
    fn bad_sites_are_errors_that_say_what_is_wrong() {
        let table = [
            (
                "[[site]]\naddress = \"127.0.0.1\"\nname = \"a\"\ncountry = \"IN\"\nport = 1\n",
                "port",
            ),
            ("[[sites]]\naddress = \"127.0.0.1\"\n", "sites"),
            (
                "[[site]]\naddress = \"localhost:80\"\nname = \"a\"\ncountry = \"IN\"\n",
                "localhost:80",
            ),
            (
                "[[site]]\naddress = \"[::1:8445\"\nname = \"a\"\ncountry = \"IN\"\n",
                "[::1:8445",
            ),
            (
                "[[site]]\naddress = \"127.0.0.1:99999\"\nname = \"a\"\ncountry = \"IN\"\n",
                "127.0.0.1:99999",
            ),
            (
                "[[site]]\naddress = \"127.0.0.1\"\nname = \"a\"\ncountry = \"IND\"\n",
                "\"IND\"",
            ),
            (
                "[[site]]\naddress = \"127.0.0.1\"\nname = \" \"\ncountry = \"IN\"\n",
                "empty name",
            ),
            (
                "[[site]]\naddress = \"127.0.0.1\"\ncountry = \"IN\"\n",
                "name",
            ),
            (
                "[[site]]\naddress = \"127.0.0.1:1\"\nname = \"a\"\ncountry = \"IN\"\n\
                 [[site]]\naddress = \"127.0.0.1:1\"\nname = \"b\"\ncountry = \"SG\"\n",
                "127.0.0.1:1 is given twice (sites a and b)",
            ),
        ];
        for (text, expected) in table {
            let err = sites(text).unwrap_err();
            assert!(err.starts_with("sites sites.toml: "), "{err}");
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn sites_max_and_sites_bytes_max_are_enforced() {
        let many: Vec<Site> = (0..=SITES_MAX as u32)
            .map(|i| Site::parse(&std::net::Ipv4Addr::from(i).to_string(), "x", "IN").unwrap())
            .collect();
        let err = Sites::new(many).unwrap_err();
        assert!(err.contains(&format!("at most {SITES_MAX}")), "{err}");
        let big = "#".repeat(SITES_BYTES_MAX + 1);
        let err = sites(&big).unwrap_err();
        assert!(err.contains(&format!("at most {SITES_BYTES_MAX}")), "{err}");
        let long = "n".repeat(SITE_NAME_BYTES_MAX + 1);
        let err = Site::parse("127.0.0.1", &long, "IN").unwrap_err();
        assert!(
            err.contains(&format!("at most {SITE_NAME_BYTES_MAX}")),
            "{err}"
        );
    }
}
