-- Decisions for gateways (`GET /v1/decisions`) and the webhook outbox.
--
-- A decision tells a gateway what to do about one subject it can see (an account, an API key or
-- an end user): throttle, block or send to review, until an expiry. Decisions are derived from
-- findings (confirmed ones, and optionally unreviewed flags) and rewritten whenever the finding,
-- its review state or the allowlist changes. A decision is never updated in place: it is created,
-- and later marked deleted; both moves take the next number of `decision_seq`, so `seq` orders
-- the change stream that bouncers follow with `since=`. The counter row is updated inside the
-- writing transaction, which serialises writers, so a reader never sees seq N+1 before seq N.
create table decision (
    decision_id     integer primary key autoincrement,
    scope           text not null check (scope in ('account', 'api_key', 'end_user')),
    value           text not null,
    action          text not null check (action in ('throttle', 'block', 'review')),
    origin          text not null check (origin in ('confirmed', 'flagged')),
    reason          text not null,
    severity        text not null,
    -- The finding that caused it (an account's own, or the cluster it belongs to).
    finding_kind    text not null,
    finding_subject text not null,
    created_at_ms   bigint not null,
    expires_at_ms   bigint,
    deleted_at_ms   bigint,
    seq             bigint not null
);
create index decision_by_seq on decision (seq);
create index decision_live_by_finding on decision (finding_kind, finding_subject)
    where deleted_at_ms is null;

create table decision_seq (
    id  integer primary key check (id = 1),
    seq bigint not null
);
insert into decision_seq (id, seq) values (1, 0);

-- One row per event (finding.flagged, finding.confirmed, finding.dismissed), written in the same
-- transaction as the change it reports, so an event is never lost nor sent for a rolled-back
-- change. The body is stored exactly as it is signed and sent.
create table webhook_event (
    event_id      integer primary key autoincrement,
    event_type    text not null,
    body          text not null,
    created_at_ms bigint not null
);

-- One row per event and configured endpoint while it is undelivered; deleted once delivered.
create table webhook_delivery (
    event_id           bigint not null references webhook_event (event_id) on delete cascade,
    endpoint           text not null,
    attempts           integer not null default 0,
    next_attempt_at_ms bigint not null,
    last_error         text,
    primary key (event_id, endpoint)
);
create index webhook_delivery_due on webhook_delivery (next_attempt_at_ms);

-- Deliveries that ran out of attempts: kept for the operator to inspect and replay.
create table webhook_dead_letter (
    event_id      bigint not null references webhook_event (event_id) on delete cascade,
    endpoint      text not null,
    attempts      integer not null,
    last_error    text,
    failed_at_ms  bigint not null,
    primary key (event_id, endpoint)
);
