//! Severity: rules that rate each finding, and the overall rating of a capture.

use serde::{Deserialize, Serialize};
use sovereign_model::IdentifierKind;

use crate::ScanError;

/// Most rules one policy may have.
pub const POLICY_RULES_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::None,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The rating in the words of an advisory.
    pub fn advisory(self) -> &'static str {
        match self {
            Severity::None => {
                "No identifier of the device was seen leaving it in the captured traffic."
            }
            Severity::Low => {
                "Low severity: only resettable or low-value identifiers left the device, protected or at home."
            }
            Severity::Medium => {
                "Medium severity: identifiers left the device in a way that allows tracking it; review the destinations."
            }
            Severity::High => {
                "High severity: hardware, subscriber or personal identifiers left the device in cleartext or across a border; stop using the device for sensitive work until the vendor fixes it."
            }
            Severity::Critical => {
                "Critical severity: hardware or subscriber identifiers left the device in cleartext to another country; treat the device as untrusted."
            }
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: a finding that matches every condition given gets the severity. The first
/// matching rule wins; a finding no rule matches is `low`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Identifier kinds, e.g. `["imei", "imsi"]`; empty or absent means any.
    #[serde(default)]
    pub kinds: Vec<IdentifierKind>,
    /// Whether the finding was readable on the wire (not inside TLS).
    pub cleartext: Option<bool>,
    pub cross_border: Option<bool>,
    /// Whether the identifier was hashed (md5, sha1, sha256).
    pub hashed: Option<bool>,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

/// The built-in defaults; `--policy FILE` replaces them with a file of the same shape.
pub const DEFAULT_POLICY: &str = r#"
# Hardware and subscriber identifiers name one handset or SIM for life.
[[rule]]
kinds = ["imei", "imsi", "iccid", "serial", "wifi_mac"]
cleartext = true
cross_border = true
severity = "critical"

[[rule]]
kinds = ["imei", "imsi", "iccid", "serial", "wifi_mac"]
cleartext = true
severity = "high"

[[rule]]
kinds = ["imei", "imsi", "iccid", "serial", "wifi_mac"]
cross_border = true
severity = "high"

# Personal content: the user's number, contacts, messages, e-mail and whereabouts.
[[rule]]
kinds = ["phone", "contact", "sms", "email", "location"]
cleartext = true
severity = "high"

[[rule]]
kinds = ["phone", "contact", "sms", "email", "location"]
cross_border = true
severity = "medium"

[[rule]]
kinds = ["imei", "imsi", "iccid", "serial", "wifi_mac"]
severity = "medium"

# Resettable advertising and Android IDs, and the carrier name, still allow tracking.
[[rule]]
kinds = ["android_id", "advertising_id", "carrier"]
cleartext = true
severity = "medium"

[[rule]]
severity = "low"
"#;

/// What a rule looks at in a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: IdentifierKind,
    pub cleartext: bool,
    pub cross_border: bool,
    pub hashed: bool,
}

impl Policy {
    /// # Errors
    /// When `text` is not a policy (an unknown key or severity is named) or has more than
    /// [`POLICY_RULES_MAX`] rules.
    pub fn from_toml(text: &str, origin: &str) -> Result<Policy, ScanError> {
        let fail = |message: String| ScanError::Policy {
            path: origin.to_owned(),
            message,
        };
        let policy: Policy = toml::from_str(text).map_err(|e| fail(e.message().to_owned()))?;
        if policy.rules.len() > POLICY_RULES_MAX {
            return Err(fail(format!(
                "{} rules, at most {POLICY_RULES_MAX} allowed",
                policy.rules.len()
            )));
        }
        Ok(policy)
    }

    pub fn builtin() -> Policy {
        // The built-in text is a constant checked by the `builtin_policy_parses` test.
        Policy::from_toml(DEFAULT_POLICY, "built-in").expect("the built-in policy parses")
    }

    pub fn rate(&self, facts: Facts) -> Severity {
        self.rules
            .iter()
            .find(|rule| {
                (rule.kinds.is_empty() || rule.kinds.contains(&facts.kind))
                    && rule.cleartext.is_none_or(|c| c == facts.cleartext)
                    && rule.cross_border.is_none_or(|c| c == facts.cross_border)
                    && rule.hashed.is_none_or(|h| h == facts.hashed)
            })
            .map_or(Severity::Low, |rule| rule.severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_parses() {
        assert!(!Policy::builtin().rules.is_empty());
    }

    #[test]
    fn defaults_as_the_issue_states() {
        let p = Policy::builtin();
        let facts = |kind, cleartext, cross_border| Facts {
            kind,
            cleartext,
            cross_border,
            hashed: false,
        };
        assert_eq!(
            p.rate(facts(IdentifierKind::Imei, true, false)),
            Severity::High
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::Imsi, false, true)),
            Severity::High
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::Iccid, true, true)),
            Severity::Critical
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::Sms, true, false)),
            Severity::High
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::Location, false, true)),
            Severity::Medium
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::Carrier, true, false)),
            Severity::Medium
        );
        assert_eq!(
            p.rate(facts(IdentifierKind::AdvertisingId, false, false)),
            Severity::Low
        );
    }

    #[test]
    fn unknown_key_in_a_policy_is_named() {
        let err = Policy::from_toml("[[rule]]\nseverity = \"high\"\nkind = []\n", "p").unwrap_err();
        assert!(err.to_string().contains("kind"), "{err}");
    }

    #[test]
    fn policy_rules_max_is_enforced() {
        let text = "[[rule]]\nseverity = \"low\"\n".repeat(POLICY_RULES_MAX + 1);
        assert!(Policy::from_toml(&text, "p").is_err());
    }
}
