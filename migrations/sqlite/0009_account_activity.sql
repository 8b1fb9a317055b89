-- Requests per event-time hour over the 24 hours before an account finding's last update
-- (JSON: {"until": RFC 3339, "events": [24 counts, oldest first]}), for the console's chart.
-- Null for findings written before this column existed.
ALTER TABLE account ADD COLUMN activity text;
