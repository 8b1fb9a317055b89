//! One module per subcommand.

pub mod bench;
pub mod cpu;
pub mod eval;
pub mod replay;
pub mod serve;
pub mod settings;
pub mod simulate;
