//! The policies a region runs under: regions, residency, consent notices, retention and server
//! limits. The defaults in `config/` are compiled in, so `sovereign serve` needs no files; a
//! directory with the same file names overrides them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use sovereign_model::{ConsentScope, DataCategory, RegionsConfig, ResidencyPolicy};

const REGIONS_TOML: &str = include_str!("../../../config/regions.toml");
const RESIDENCY_TOML: &str = include_str!("../../../config/residency.toml");
const NOTICES_TOML: &str = include_str!("../../../config/notices.toml");
const RETENTION_TOML: &str = include_str!("../../../config/retention.toml");
const SERVER_TOML: &str = include_str!("../../../config/server.toml");
const OPS_TOML: &str = include_str!("../../../config/ops.toml");

/// The largest `photo_bytes_max` a region accepts: a page of a service region's part of an
/// export holds one photo of that size alone, base64 (4 bytes for 3), and must fit in a peer's
/// answer ([`crate::federation::PEER_ANSWER_BYTES_MAX`]) with room for the rest of the page.
pub const PHOTO_BYTES_CEILING: usize = crate::federation::PEER_ANSWER_BYTES_MAX / 2;

/// What the user is told before granting a scope.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub version: u32,
    pub purpose: String,
    #[schema(value_type = Vec<String>)]
    pub data_categories: Vec<DataCategory>,
    pub retention: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    pub undelivered_messages_days: u32,
    pub delivered_messages_days: u32,
    pub sessions_days: u32,
    pub verification_codes_minutes: u32,
    /// Age after which a ledger entry's details are erased (its hash stays).
    #[serde(default = "default_ledger_days")]
    pub ledger_days: u32,
}

fn default_ledger_days() -> u32 {
    730
}

/// Staff access: k-of-n approval and the bounds of a grant (`config/ops.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsPolicy {
    /// k: distinct approvers other than the requester a grant needs.
    pub approvals_required: u32,
    pub grant_duration_secs_max: u64,
    pub signature_age_secs_max: u64,
    /// N: a checkpoint is signed in the commit of every N-th entry.
    pub ledger_checkpoint_entries: u32,
    /// T: no entry waits longer than this for a signed checkpoint.
    #[serde(default = "default_ledger_checkpoint_secs_max")]
    pub ledger_checkpoint_secs_max: u64,
}

fn default_ledger_checkpoint_secs_max() -> u64 {
    crate::ledger::LEDGER_CHECKPOINT_SECS_MAX_DEFAULT
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    pub signups_per_minute: u32,
    pub logins_per_minute: u32,
    pub verifications_per_minute: u32,
    /// Sign-up texts to one phone number per hour, from any number of addresses. (Defaulted, so
    /// that a config directory written before this limit still loads.)
    #[serde(default = "default_signups_per_phone_per_hour")]
    pub signups_per_phone_per_hour: u32,
    /// Sign-in attempts (password guesses) against one account per hour, from anywhere.
    #[serde(default = "default_logins_per_account_per_hour")]
    pub logins_per_account_per_hour: u32,
    pub code_attempts_max: u32,
    pub json_body_bytes_max: usize,
    pub photo_bytes_max: usize,
    pub request_timeout_secs: u64,
    pub concurrent_requests_max: usize,
    /// Per-user quotas, checked in the commit of each write. (Defaulted, so that a config
    /// directory written before them still loads.) Live items of each backup kind.
    #[serde(default = "default_backup_items_per_kind_max")]
    pub backup_items_per_kind_max: i64,
    /// Total bytes of one user's photos.
    #[serde(default = "default_photos_bytes_per_user_max")]
    pub photos_bytes_per_user_max: i64,
    /// Undelivered messages waiting in one recipient's inbox.
    #[serde(default = "default_inbox_pending_per_user_max")]
    pub inbox_pending_per_user_max: i64,
    /// Rows read from the store per page of an export or an operator's read: what one request
    /// holds in memory at a time, whatever the account holds.
    #[serde(default = "default_export_page_rows")]
    pub export_page_rows: u32,
}

fn default_backup_items_per_kind_max() -> i64 {
    250_000
}

fn default_photos_bytes_per_user_max() -> i64 {
    128 * 1024 * 1024 * 1024
}

fn default_inbox_pending_per_user_max() -> i64 {
    10_000
}

fn default_export_page_rows() -> u32 {
    100
}

impl ServerLimits {
    /// The quota of one backup kind for [`crate::store::BackupPut`].
    pub fn backup_quota(&self, kind: crate::domain::BackupKind) -> crate::store::BackupQuota {
        crate::store::BackupQuota {
            items_max: Some(self.backup_items_per_kind_max),
            bytes_max: (kind == crate::domain::BackupKind::Photos)
                .then_some(self.photos_bytes_per_user_max),
        }
    }
}

fn default_signups_per_phone_per_hour() -> u32 {
    5
}

fn default_logins_per_account_per_hour() -> u32 {
    30
}

#[derive(Debug, Clone)]
pub struct Policies {
    pub regions: RegionsConfig,
    pub residency: ResidencyPolicy,
    pub notices: BTreeMap<ConsentScope, Notice>,
    pub retention: RetentionPolicy,
    pub limits: ServerLimits,
    pub ops: OpsPolicy,
}

impl Policies {
    /// The defaults shipped in `config/`.
    ///
    /// # Errors
    /// Never for the shipped files (a test checks them), but the signature is shared with
    /// [`Policies::from_dir`].
    pub fn embedded() -> anyhow::Result<Policies> {
        Policies::parse(|name| {
            Ok(match name {
                "regions.toml" => REGIONS_TOML,
                "residency.toml" => RESIDENCY_TOML,
                "notices.toml" => NOTICES_TOML,
                "retention.toml" => RETENTION_TOML,
                "ops.toml" => OPS_TOML,
                _ => SERVER_TOML,
            }
            .to_owned())
        })
    }

    /// Policies from a directory; a file the directory lacks falls back to the shipped default.
    ///
    /// # Errors
    /// When a file cannot be read or does not parse; the message names the file.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Policies> {
        let defaults = Policies::embedded_text();
        Policies::parse(|name| {
            let path = dir.join(name);
            if path.exists() {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))
            } else {
                Ok(defaults
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, t)| *t)
                    .unwrap_or("")
                    .to_owned())
            }
        })
    }

    fn embedded_text() -> [(&'static str, &'static str); 6] {
        [
            ("regions.toml", REGIONS_TOML),
            ("residency.toml", RESIDENCY_TOML),
            ("notices.toml", NOTICES_TOML),
            ("retention.toml", RETENTION_TOML),
            ("server.toml", SERVER_TOML),
            ("ops.toml", OPS_TOML),
        ]
    }

    fn parse(read: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<Policies> {
        let regions =
            RegionsConfig::from_toml(&read("regions.toml")?).context("in regions.toml")?;
        let residency =
            ResidencyPolicy::from_toml(&read("residency.toml")?).context("in residency.toml")?;
        residency
            .check_against(&regions)
            .context("in residency.toml")?;
        let raw_notices: BTreeMap<String, Notice> =
            toml::from_str(&read("notices.toml")?).context("in notices.toml")?;
        let mut notices = BTreeMap::new();
        for (name, notice) in raw_notices {
            let Some(scope) = ConsentScope::parse(&name) else {
                bail!("in notices.toml: unknown consent scope {name:?}");
            };
            notices.insert(scope, notice);
        }
        for scope in ConsentScope::ALL {
            if !notices.contains_key(&scope) {
                bail!("in notices.toml: scope {scope} has no notice; every scope needs one");
            }
        }
        let retention: RetentionPolicy =
            toml::from_str(&read("retention.toml")?).context("in retention.toml")?;
        let limits: ServerLimits =
            toml::from_str(&read("server.toml")?).context("in server.toml")?;
        if limits.backup_items_per_kind_max < 1
            || limits.photos_bytes_per_user_max < 1
            || limits.inbox_pending_per_user_max < 1
            || limits.export_page_rows == 0
        {
            bail!(
                "in server.toml: backup_items_per_kind_max, photos_bytes_per_user_max, \
                 inbox_pending_per_user_max and export_page_rows must be positive"
            );
        }
        if limits.photo_bytes_max > PHOTO_BYTES_CEILING {
            bail!(
                "in server.toml: photo_bytes_max must be at most {PHOTO_BYTES_CEILING}: a service \
                 region hands an export's photos to the home one page at a time, base64 in an \
                 answer of at most {} bytes, and one photo must fit in a page",
                crate::federation::PEER_ANSWER_BYTES_MAX
            );
        }
        let ops: OpsPolicy = toml::from_str(&read("ops.toml")?).context("in ops.toml")?;
        if ops.approvals_required == 0 {
            bail!("in ops.toml: approvals_required must be at least 1");
        }
        if ops.grant_duration_secs_max == 0
            || ops.ledger_checkpoint_entries == 0
            || ops.ledger_checkpoint_secs_max == 0
        {
            bail!(
                "in ops.toml: grant_duration_secs_max, ledger_checkpoint_entries and \
                 ledger_checkpoint_secs_max must be positive"
            );
        }
        Ok(Policies {
            regions,
            residency,
            notices,
            retention,
            limits,
            ops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_parse() {
        let policies = Policies::embedded().unwrap();
        assert_eq!(policies.regions.regions.len(), 6);
        assert_eq!(policies.notices.len(), ConsentScope::ALL.len());
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("server.toml"),
            "signups_per_minute = \"many\"",
        )
        .unwrap();
        let err = format!("{:#}", Policies::from_dir(dir.path()).unwrap_err());
        assert!(err.contains("server.toml"), "{err}");
    }

    #[test]
    fn photos_too_large_for_an_export_page_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let server = SERVER_TOML.replace(
            "photo_bytes_max = 16777216",
            &format!("photo_bytes_max = {}", PHOTO_BYTES_CEILING + 1),
        );
        assert_ne!(server, SERVER_TOML);
        std::fs::write(dir.path().join("server.toml"), server).unwrap();
        let err = format!("{:#}", Policies::from_dir(dir.path()).unwrap_err());
        assert!(err.contains("photo_bytes_max must be at most"), "{err}");
    }

    #[test]
    fn zero_approvals_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ops = OPS_TOML.replace("approvals_required = 2", "approvals_required = 0");
        std::fs::write(dir.path().join("ops.toml"), ops).unwrap();
        let err = format!("{:#}", Policies::from_dir(dir.path()).unwrap_err());
        assert!(err.contains("approvals_required"), "{err}");
        assert_eq!(Policies::embedded().unwrap().ops.approvals_required, 2);
    }
}
