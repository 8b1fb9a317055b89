//! One module per subcommand.

pub mod replay;
pub mod serve;
pub mod settings;
