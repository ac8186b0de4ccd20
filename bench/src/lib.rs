//! Shared helpers for Sovereign's whole-program benchmarks (see `bench/*.sh`).

pub mod delay_proxy;

use anyhow::Context;
use serde_json::{Value, json};

/// The password every benchmark user has.
pub const PASSWORD: &str = "benchmark password";

/// Signs `phone` up (reading the code from the region's SMS outbox in `data_dir`), signs it in
/// and grants `scopes`. Returns the user id and a bearer token.
///
/// # Errors
/// When any step is refused.
pub async fn make_user(
    client: &reqwest::Client,
    base: &str,
    data_dir: &std::path::Path,
    phone: &str,
    scopes: &[&str],
) -> anyhow::Result<(String, String)> {
    let reply: Value = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"phone": phone, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let verification_id = reply["verification_id"]
        .as_str()
        .context("sign-up failed")?;
    let outbox = std::fs::read_to_string(data_dir.join("sms-outbox.jsonl"))?;
    let code = outbox
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|m| m["to"] == phone)
        .and_then(|m| m["code"].as_str().map(str::to_owned))
        .context("no code in the outbox")?;
    let verified: Value = client
        .post(format!("{base}/v1/accounts/verify"))
        .json(&json!({"verification_id": verification_id, "code": code}))
        .send()
        .await?
        .json()
        .await?;
    let user_id = verified["user_id"]
        .as_str()
        .context("verify failed")?
        .to_owned();
    let session: Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"phone": phone, "password": PASSWORD, "device_name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = session["token"]
        .as_str()
        .context("sign-in failed")?
        .to_owned();
    for scope in scopes {
        client
            .put(format!("{base}/v1/consents/{scope}"))
            .bearer_auth(&token)
            .json(&json!({"notice_version": 1}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok((user_id, token))
}

/// The value below which `p` (0..=1) of the sorted samples fall.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!((0.0..=1.0).contains(&p));
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), 51.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert_eq!(percentile(&samples, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
