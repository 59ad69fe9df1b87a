//! One module per group of subcommands.

pub mod bench;
pub mod client;
pub mod serve;
pub mod worker;
