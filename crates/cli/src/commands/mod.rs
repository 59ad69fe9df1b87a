//! One module per group of subcommands.

pub mod client;
pub mod serve;
pub mod worker;
