//! Ground truth written next to the traffic: one label per account that sent anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Benign,
    Attack,
}

/// `{"label": "benign"|"attack", "archetype": "...", "campaign": "..."|null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub label: Verdict,
    pub archetype: String,
    pub campaign: Option<String>,
    /// For an attack hidden inside a shared account (a reseller's): the end users that are the
    /// attack. Empty means every request of the account belongs to the campaign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_users: Vec<String>,
}

impl Label {
    pub fn benign(archetype: &str) -> Self {
        Self {
            label: Verdict::Benign,
            archetype: archetype.to_string(),
            campaign: None,
            end_users: Vec::new(),
        }
    }

    pub fn attack(archetype: &str, campaign: &str) -> Self {
        Self {
            label: Verdict::Attack,
            archetype: archetype.to_string(),
            campaign: Some(campaign.to_string()),
            end_users: Vec::new(),
        }
    }

    /// Names the end users of a shared account that are the attack.
    pub fn with_end_users(mut self, end_users: impl IntoIterator<Item = String>) -> Self {
        self.end_users = end_users.into_iter().collect();
        self.end_users.sort();
        self
    }

    pub fn is_attack(&self) -> bool {
        self.label == Verdict::Attack
    }
}

/// Account id to label, sorted so the file is byte-identical for the same seed.
pub type Labels = BTreeMap<String, Label>;

pub const BENIGN_ARCHETYPES: &[&str] = &[
    "casual_chat",
    "developer",
    "production_app",
    "batch_job",
    "benchmark_runner",
    "enterprise",
    "reseller",
    "eval_lab",
    "power_student",
    "coding_agent",
    "multilingual_chat",
    "hackathon",
    "trial_developer",
];

pub const ATTACK_ARCHETYPES: &[&str] = &[
    "bulk_harvest",
    "hydra_cluster",
    "low_and_slow",
    "reasoning_harvest",
    "pivot",
    "reseller_hidden",
    "logprob_harvest",
    "agentic_harvest",
    "multilingual_harvest",
    "burner_accounts",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_serialise_in_the_documented_shape() {
        let mut labels = Labels::new();
        labels.insert("acct_b".into(), Label::attack("hydra_cluster", "hydra-1"));
        labels.insert("acct_a".into(), Label::benign("casual_chat"));
        let json = serde_json::to_string(&labels).unwrap();
        assert_eq!(
            json,
            r#"{"acct_a":{"label":"benign","archetype":"casual_chat","campaign":null},"acct_b":{"label":"attack","archetype":"hydra_cluster","campaign":"hydra-1"}}"#
        );
        let back: Labels = serde_json::from_str(&json).unwrap();
        assert_eq!(back, labels);
    }
}
