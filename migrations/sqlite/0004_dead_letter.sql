-- Finding updates the store refused for good (a value the database cannot hold, an invalid
-- score): the writer moves each one here, alone, instead of retrying it at the head of its queue
-- and blocking every finding behind it. `payload` is the update as JSON text (escaped, so it
-- always fits); `error` says why it was refused. Operators read, fix and replay from here (see
-- docs/operations.md, "Dead-lettered findings").

create table dead_letter (
    dead_letter_id integer primary key autoincrement,
    subject_kind   text not null,
    subject_id     text not null,
    error          text not null,
    payload        text not null,
    at_ms          bigint not null
);

create index dead_letter_at on dead_letter (at_ms);
