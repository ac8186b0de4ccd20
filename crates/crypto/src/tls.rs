use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::CryptoError;

/// A certificate and its private key, both PEM.
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The local certificate authority a server creates on first start, so that every listener
/// speaks TLS without a public CA: clients trust `ca.pem`.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn cert_error(e: rcgen::Error) -> CryptoError {
    CryptoError::Certificate(e.to_string())
}

impl LocalCa {
    /// A new CA with a fresh P-256 key.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn generate(common_name: &str) -> Result<(LocalCa, IssuedCertificate), CryptoError> {
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Sovereign");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(cert_error)?;
        let issued = IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let issuer = Issuer::new(params, key);
        Ok((
            LocalCa {
                cert_pem: issued.cert_pem.clone(),
                issuer,
            },
            issued,
        ))
    }

    /// Loads a CA written earlier by [`LocalCa::generate`].
    ///
    /// # Errors
    /// When the PEM texts are not a CA certificate and its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<LocalCa, CryptoError> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_error)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(cert_error)?;
        Ok(LocalCa {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    ///
    /// # Errors
    /// When a name is not a valid DNS name or IP address, or signing fails.
    pub fn issue_server_cert(&self, names: &[&str]) -> Result<IssuedCertificate, CryptoError> {
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        // Names the CA key that signed it, so that a client given several sites' CAs in one
        // bundle (OpenSSL, curl) picks the right one even where their names are alike.
        params.use_authority_key_identifier_extension = true;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().map_err(cert_error)?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_and_reloads() {
        let (ca, ca_files) = LocalCa::generate("test CA").unwrap();
        let leaf = ca.issue_server_cert(&["localhost", "127.0.0.1"]).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let again = LocalCa::from_pem(&ca_files.cert_pem, &ca_files.key_pem).unwrap();
        assert!(again.issue_server_cert(&["localhost"]).is_ok());
        assert!(LocalCa::from_pem("garbage", &ca_files.key_pem).is_err());
    }
}
