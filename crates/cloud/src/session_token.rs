//! Bearer tokens that say which site issued them: `sv1.<region>.<256 random bits, base64url>`.
//!
//! The issuing region is written in the token so that a site shown a token it does not hold
//! asks exactly one other site about it (the issuer), never every peer, and shows the token's
//! digest to no one else. The region part is only a hint about whom to ask: an answer still
//! counts only from the user's directory home (see [`crate::placement::remote_session`]).
//!
//! Tokens issued before this format (plain base64url) keep working where their session is
//! stored; no other site asks anyone about them.

use sovereign_crypto::{CryptoError, random_token, token_digest};
use sovereign_model::RegionId;

/// The format's tag, first in every token.
const TOKEN_TAG: &str = "sv1";

/// A new token issued by `region`, and the digest it is stored under.
///
/// # Errors
/// When the system random generator fails.
pub fn issue(region: &RegionId) -> Result<(String, [u8; 32]), CryptoError> {
    let (random, _) = random_token()?;
    let token = format!("{TOKEN_TAG}.{region}.{random}");
    let digest = token_digest(&token);
    Ok((token, digest))
}

/// The region a token names as its issuer; `None` for a token of the old format or one whose
/// region part is not a region id.
pub fn issuer(token: &str) -> Option<RegionId> {
    let rest = token.strip_prefix(TOKEN_TAG)?.strip_prefix('.')?;
    let (region, random) = rest.split_once('.')?;
    if random.is_empty() {
        return None;
    }
    RegionId::parse(region).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_issuer() {
        let region = RegionId::parse("in-mumbai").unwrap();
        let (token, digest) = issue(&region).unwrap();
        assert_eq!(issuer(&token), Some(region));
        assert_eq!(digest, token_digest(&token));
    }

    #[test]
    fn tokens_that_name_no_region_have_no_issuer() {
        for token in [
            "",
            "sv1",
            "sv1.",
            "sv1.in-mumbai",
            "sv1.in-mumbai.",
            "sv1..abc",
            "sv2.in-mumbai.abc",
            "sv1.Not A Region.abc",
            "q2Zk3b8kK2v1oLxw3Cw0-abc_DEF",
        ] {
            assert_eq!(issuer(token), None, "{token:?}");
        }
    }
}
