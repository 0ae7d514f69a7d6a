//! The commands besides serving: the command line itself, `check`,
//! `healthcheck`, `migrate`, and the logging set-up every command shares.
//!
//! The top of the crate: it may use every other part.

pub(crate) mod check;
pub mod cli;
pub(crate) mod healthcheck;
pub(crate) mod migrate;
pub(crate) mod telemetry;
