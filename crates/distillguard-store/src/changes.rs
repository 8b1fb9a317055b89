//! What a chunk of fresh findings changes beside the finding rows themselves, worked out without
//! the database (`sql_write` applies it): the detector index rows to replace, the audit entries
//! on the edges of the engine's flag (each also a webhook), the subjects whose decisions need
//! reconciling, and the dismissed findings that may reopen.

use std::collections::HashMap;

use crate::model::{Subject, SubjectKind};
use crate::prepare::{PendingAudit, Prepared};
use crate::rows::ExistingRow;

pub(crate) type Key = (SubjectKind, String);

pub(crate) fn key(p: &Prepared) -> Key {
    (p.subject.kind, p.subject.id.clone())
}

/// The audit actions the engine's flag writes; each is also sent to the webhooks.
pub(crate) const ENGINE_ACTIONS: [&str; 2] = ["finding.flagged", "finding.unflagged"];

#[derive(Default)]
pub(crate) struct ChunkChanges<'a> {
    /// Findings whose detector rows are replaced (their old rows are deleted first).
    pub cleared: Vec<i64>,
    pub detector_rows: Vec<(i64, &'a str)>,
    pub audits: Vec<PendingAudit>,
    pub decide: Vec<&'a Subject>,
    /// Dismissed findings with a new score: the review may reopen them.
    pub dismissed: Vec<(&'a Prepared, &'a ExistingRow)>,
}

/// The changes of the findings that were written (`ids`: their finding ids), against the rows
/// stored before (`existing`). `acts_on_flags`: unreviewed flags make decisions.
pub(crate) fn plan<'a>(
    fresh: &[&'a Prepared],
    existing: &'a HashMap<Key, ExistingRow>,
    ids: &HashMap<Key, i64>,
    acts_on_flags: bool,
) -> ChunkChanges<'a> {
    let mut changes = ChunkChanges::default();
    for &p in fresh {
        let Some(&finding_id) = ids.get(&key(p)) else {
            continue;
        };
        let before = existing.get(&key(p));
        let was_flagged = before.is_some_and(|row| row.engine_flagged);
        // Decisions change only when a flag may act, or a confirmed cluster's membership may
        // have changed; everything else keeps the batch cheap.
        let confirmed_cluster = p.subject.kind == SubjectKind::Cluster
            && before.is_some_and(|row| row.status == "confirmed");
        if (acts_on_flags && (p.engine_flagged || was_flagged)) || confirmed_cluster {
            changes.decide.push(&p.subject);
        }
        if before.is_none_or(|row| row.detectors.0 != p.detectors) {
            if before.is_some() {
                changes.cleared.push(finding_id);
            }
            let rows = p.detectors.iter().map(|d| (finding_id, d.as_str()));
            changes.detector_rows.extend(rows);
        }
        // Both edges are said once: a receiver acting on a flag must hear when the engine
        // withdraws it (a bounded re-run cleared an account, a cluster fell apart).
        if p.engine_flagged != was_flagged {
            let action = if p.engine_flagged {
                ENGINE_ACTIONS[0]
            } else {
                ENGINE_ACTIONS[1]
            };
            changes.audits.push(PendingAudit {
                subject: p.subject.clone(),
                action,
                before: None,
                after: Some(p.audit_view()),
            });
        }
        if let Some(row) = before.filter(|row| row.status == "dismissed") {
            changes.dismissed.push((p, row));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::Profile;
    use distillguard_core::finding::Severity;
    use sqlx::types::Json;

    fn prepared(id: &str, flagged: bool, detectors: &[&str]) -> Prepared {
        Prepared {
            subject: Subject::account(id).unwrap(),
            score: if flagged { 0.9 } else { 0.3 },
            severity: Severity::High,
            engine_flagged: flagged,
            detectors: detectors.iter().map(|d| d.to_string()).collect(),
            signals: Vec::new(),
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            first_flagged_at_ms: None,
            profile: Profile::Account {
                cluster_id: None,
                events: 1,
                samples: Vec::new(),
                activity: None,
                end_user: None,
            },
            sanitized: 0,
        }
    }

    fn row(id: &str, flagged: bool, detectors: &[&str], status: &str) -> ExistingRow {
        ExistingRow {
            finding_id: 7,
            subject_id: id.into(),
            last_seen_ms: 1_500,
            engine_flagged: flagged,
            detectors: Json(detectors.iter().map(|d| d.to_string()).collect()),
            status: status.into(),
            close_reason: None,
            closed_score: None,
            closed_severity_rank: None,
            version: 1,
        }
    }

    fn planned<'a>(
        fresh: &[&'a Prepared],
        existing: &'a HashMap<Key, ExistingRow>,
        acts_on_flags: bool,
    ) -> ChunkChanges<'a> {
        let ids = fresh.iter().map(|p| (key(p), 7)).collect();
        plan(fresh, existing, &ids, acts_on_flags)
    }

    fn actions(changes: &ChunkChanges<'_>) -> Vec<&'static str> {
        changes.audits.iter().map(|a| a.action).collect()
    }

    #[test]
    fn a_new_flag_and_a_withdrawn_flag_are_each_audited_once() {
        let new = prepared("new", true, &["volume"]);
        let withdrawn = prepared("gone", false, &[]);
        let steady = prepared("steady", true, &["volume"]);
        let existing = HashMap::from([
            (key(&withdrawn), row("gone", true, &["volume"], "open")),
            (key(&steady), row("steady", true, &["volume"], "open")),
        ]);

        let changes = planned(&[&new, &withdrawn, &steady], &existing, false);

        assert_eq!(actions(&changes), ["finding.flagged", "finding.unflagged"]);
        assert!(
            changes.decide.is_empty(),
            "no flag decides unless configured"
        );
    }

    #[test]
    fn decisions_are_reconciled_on_both_edges_when_flags_decide() {
        let withdrawn = prepared("gone", false, &[]);
        let quiet = prepared("quiet", false, &[]);
        let existing = HashMap::from([(key(&withdrawn), row("gone", true, &[], "open"))]);

        let changes = planned(&[&withdrawn, &quiet], &existing, true);

        let decided: Vec<&str> = changes.decide.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(decided, ["gone"]);
    }

    #[test]
    fn detector_rows_are_rewritten_only_when_the_set_changes() {
        let same = prepared("same", true, &["volume"]);
        let changed = prepared("changed", true, &["volume", "coverage"]);
        let existing = HashMap::from([
            (key(&same), row("same", true, &["volume"], "open")),
            (key(&changed), row("changed", true, &["volume"], "open")),
        ]);

        let changes = planned(&[&same, &changed], &existing, false);

        assert_eq!(changes.cleared, [7]);
        assert_eq!(changes.detector_rows, [(7, "volume"), (7, "coverage")]);
    }

    #[test]
    fn only_dismissed_findings_are_candidates_to_reopen() {
        let dismissed = prepared("d", true, &[]);
        let open = prepared("o", true, &[]);
        let existing = HashMap::from([
            (key(&dismissed), row("d", true, &[], "dismissed")),
            (key(&open), row("o", true, &[], "open")),
        ]);

        let changes = planned(&[&dismissed, &open], &existing, false);

        let candidates: Vec<&str> = changes
            .dismissed
            .iter()
            .map(|(p, _)| p.subject.id.as_str())
            .collect();
        assert_eq!(candidates, ["d"]);
    }
}
