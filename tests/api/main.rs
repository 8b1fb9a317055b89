//! Black-box API tests: each test spawns the service on a free port and talks HTTP to it.

mod helpers;

mod alert_series;
mod auth;
mod checkpoints;
mod clusters;
mod console;
mod console_browser;
mod decisions;
mod gateways;
mod ingest;
mod operations;
mod restart;
mod review;
mod webhooks;
