//! One module per command of `docs/interface.md`.

pub mod demo;
pub mod doctor;
pub mod jsm;
pub mod link;
pub mod resync;
pub mod serve;
pub mod sites;
pub mod status;
pub mod wait;

/// A command failure, printed as one line on stderr with exit code 1.
pub type CommandResult<T> = anyhow::Result<T>;
