//! Black-box API tests: each test spawns the service on a free port and talks HTTP to it.

mod helpers;

mod activity;
mod alert_series;
mod auth;
mod checkpoints;
mod clock;
mod clusters;
mod console;
mod console_browser;
mod decisions;
mod errors;
mod gateways;
mod ingest;
mod jetstream;
mod openapi;
mod operations;
mod quickstart;
mod restart;
mod review;
mod webhooks;
