-- Checkpoints in chunks: one manifest row per generation, written last, makes it visible; its
-- chunks are written before it, each of bounded size, so a checkpoint never needs one value as
-- large as the whole detector state (that failed past about 1 GB on both backends). Keyed by
-- checkpoint_key so that several detector processes can keep their own checkpoints in one
-- database. Older generations are deleted once a newer manifest is committed. The single-row
-- table `checkpoint` (format 1, JSON) stays readable for upgrades and is deleted on the first
-- new checkpoint.

create table checkpoint_manifest (
    checkpoint_key text not null,
    generation     bigint not null,
    format_version integer not null,
    chunk_count    bigint not null,
    total_bytes    bigint not null,
    -- Position of the event log the state covers; a restart replays the log from here.
    log_position   bigint,
    watermark_ms   bigint,
    meta           blob not null,
    saved_at_ms    bigint not null,
    primary key (checkpoint_key, generation)
);

create table checkpoint_chunk (
    checkpoint_key text not null,
    generation     bigint not null,
    seq            bigint not null,
    data           blob not null,
    primary key (checkpoint_key, generation, seq)
);
