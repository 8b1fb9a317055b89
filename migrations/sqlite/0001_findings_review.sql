-- Findings, their subjects, review state, notes, audit log, allowlist and detector checkpoints.
--
-- Every time is epoch milliseconds in an integer: event times arrive from the data as epoch ms, and
-- one representation on both backends keeps ordering and equality exact (SQLite has no timestamp
-- type). Applied migrations are never edited: add a new numbered file instead.

-- One row per subject (account or cluster): the engine's latest view plus the analyst's review
-- state. Re-scoring updates the row in place, so there is one open finding per subject.
create table finding (
    finding_id           integer primary key autoincrement,
    subject_kind         text not null check (subject_kind in ('account', 'cluster')),
    subject_id           text not null,
    score                real not null check (score >= 0 and score <= 1),
    severity             text not null check (severity in ('low', 'medium', 'high', 'critical')),
    severity_rank        integer not null,
    -- What the engine said; allowlisting is applied when reading, so expiry needs no sweeper.
    engine_flagged       boolean not null,
    detectors            text not null,
    evidence             text not null,
    first_seen_ms        bigint not null,
    last_seen_ms         bigint not null,
    first_flagged_at_ms  bigint,
    status               text not null default 'open'
                         check (status in ('open', 'investigating', 'confirmed', 'dismissed')),
    assignee             text,
    close_reason         text check (close_reason in
                         ('true_positive', 'false_positive', 'benign_positive', 'duplicate', 'other')),
    -- Score and severity when the subject was closed: the reopen rule compares against these.
    closed_score         real,
    closed_severity_rank integer,
    version              bigint not null default 1,
    created_at_ms        bigint not null,
    updated_at_ms        bigint not null,
    unique (subject_kind, subject_id)
);
create index finding_by_score on finding (subject_kind, score desc, finding_id desc);
create index finding_by_last_seen on finding (subject_kind, last_seen_ms desc, finding_id desc);
create index finding_by_status on finding (subject_kind, status);

-- Detectors that fired for a finding, one row each, so the detector filter is an index lookup.
create table finding_detector (
    finding_id bigint not null references finding (finding_id) on delete cascade,
    detector   text not null,
    primary key (finding_id, detector)
);
create index finding_detector_by_detector on finding_detector (detector, finding_id);

create table account (
    account_id    text primary key,
    cluster_id    text,
    events        bigint not null,
    first_seen_ms bigint not null,
    last_seen_ms  bigint not null,
    -- Prompt hashes and event times; the text only when `keep_prompts` is on.
    samples       text not null,
    updated_at_ms bigint not null
);
create index account_by_cluster on account (cluster_id);

create table cluster (
    cluster_id    text primary key,
    links         text not null,
    member_count  bigint not null,
    first_seen_ms bigint not null,
    last_seen_ms  bigint not null,
    updated_at_ms bigint not null
);

create table cluster_member (
    cluster_id text not null references cluster (cluster_id) on delete cascade,
    account_id text not null,
    primary key (cluster_id, account_id)
);
create index cluster_member_by_account on cluster_member (account_id);

create table note (
    note_id       integer primary key autoincrement,
    subject_kind  text not null,
    subject_id    text not null,
    author        text not null,
    body          text not null,
    created_at_ms bigint not null,
    foreign key (subject_kind, subject_id) references finding (subject_kind, subject_id)
);
create index note_by_subject on note (subject_kind, subject_id, note_id);

-- No foreign key: allowlisting a subject before it has a finding is audited too.
create table audit_log (
    audit_id     integer primary key autoincrement,
    subject_kind text not null,
    subject_id   text not null,
    actor        text not null,
    at_ms        bigint not null,
    action       text not null,
    before       text,
    after        text
);
create index audit_log_by_subject on audit_log (subject_kind, subject_id, audit_id);

create table allowlist (
    allowlist_id  integer primary key autoincrement,
    subject_kind  text not null check (subject_kind in ('account', 'cluster')),
    subject_id    text not null,
    reason        text not null,
    expires_at_ms bigint,
    created_by    text not null,
    created_at_ms bigint not null,
    removed_at_ms bigint,
    removed_by    text
);
-- At most one live entry per subject, so joining it onto a finding never duplicates rows.
create unique index allowlist_one_live_entry on allowlist (subject_kind, subject_id)
    where removed_at_ms is null;

create table checkpoint (
    checkpoint_key text primary key,
    data           blob not null,
    watermark_ms   bigint,
    saved_at_ms    bigint not null
);

create table watermark (
    name          text primary key,
    at_ms         bigint not null,
    updated_at_ms bigint not null
);
