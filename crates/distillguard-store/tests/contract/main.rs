//! The store's contract: every test body below runs against SQLite (a temp file) and
//! PostgreSQL (a fresh database per test via `#[sqlx::test]`, which needs `DATABASE_URL`, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`; without it the PostgreSQL half fails loudly).

mod decisions;
mod findings;
mod review;
mod support;
mod writer;

macro_rules! contract {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::support::Harness::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    crate::$module::$name(crate::support::Harness::postgres(pool).await).await;
                }
            )*
        }
    };
}

contract! {
    decisions::a_confirmed_account_is_blocked_until_it_is_reopened,
    decisions::a_confirmed_cluster_decides_on_each_member_but_allowlisted_ones,
    decisions::unreviewed_flags_decide_only_when_enabled_and_severe_enough,
    decisions::dismissing_deletes_the_decision_and_the_stream_pages_in_order,
    findings::a_fresh_store_is_ready_and_empty,
    findings::applying_the_same_batch_twice_gives_the_same_state,
    findings::one_finding_per_subject_follows_the_latest_score,
    findings::a_flag_the_engine_withdraws_is_audited_and_sent_to_webhooks,
    findings::an_update_older_than_the_stored_one_is_ignored,
    findings::an_invalid_update_is_refused_without_failing_the_batch,
    findings::hourly_activity_is_kept_with_the_account,
    findings::prompts_are_kept_only_when_configured,
    findings::account_and_cluster_details_carry_their_evidence,
    findings::list_filters_narrow_the_result,
    findings::pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_score,
    findings::pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_last_seen,
    findings::pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_creation,
    findings::a_cursor_is_refused_for_another_query,
    findings::stats_count_by_status_and_severity_and_show_watermarks,
    findings::checkpoints_round_trip_and_are_replaced,
    findings::nul_characters_in_every_text_field_are_replaced_and_noted,
    findings::review_input_with_nul_is_invalid,
    findings::a_cluster_first_seen_follows_its_current_members,
    review::triage_moves_a_finding_through_the_workflow_with_an_audit_entry_per_step,
    review::a_stale_version_is_a_conflict_and_changes_nothing,
    review::an_invalid_transition_is_refused_and_changes_nothing,
    review::unknown_subjects_are_not_found,
    review::a_bulk_change_reports_each_item,
    review::notes_are_kept_in_order_and_audited,
    review::an_allowlisted_subject_is_scored_but_not_flagged_and_says_why,
    review::an_expired_allowlist_entry_no_longer_applies,
    review::a_dismissed_subject_that_gets_clearly_worse_reopens,
    review::confirmed_subjects_do_not_reopen,
    writer::a_database_outage_delays_findings_but_loses_none,
    writer::shutdown_drains_the_buffer,
    writer::a_full_buffer_drops_and_counts_new_subjects,
    writer::a_finding_the_store_refuses_for_good_is_dead_lettered_and_blocks_nothing,
}
