-- The end user of a shared account whose own traffic an account finding judges (issue 13: a
-- harvest hidden behind a reseller). Null when the finding judges the account as a whole, and
-- for findings written before this column existed.
ALTER TABLE account ADD COLUMN end_user text;
