//! Labelled traffic simulator and evaluation maths for distillguard.
//!
//! Pure: it builds canonical [`ApiEvent`]s and hands them to a sink in output order; files,
//! compression and the command line live in the binary. The same [`Scenario`] and seed always
//! give the same events in the same order (see `docs/simulator.md`).
//!
//! - [`scenario`]: flags to a mix of benign customers and attack campaigns ("actors").
//! - [`prompts`]: corpora and the procedural prompt generator.
//! - [`labels`]: the ground-truth file.
//! - [`eval`]: precision, recall, time-to-detect and cluster purity from a replay report.

mod actors;
mod dist;
pub mod eval;
pub mod labels;
mod net;
pub mod prompts;
pub mod scenario;
mod timing;
mod words;

pub use labels::{Label, Labels, Verdict};
pub use prompts::{Corpus, PromptBook};
pub use scenario::{simulate, CampaignSummary, Scenario, SimulationSummary};

/// Why the simulator or the evaluation refused its input.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("corpus line {line}: {reason}")]
    Corpus { line: usize, reason: String },
    #[error("corpus has no prompts")]
    EmptyCorpus,
    #[error("invalid scenario: {0}")]
    Scenario(String),
}
