//! End-to-end tests of the `hive` binary: real processes, real signals, a real `kill -9`.

mod chaos;
mod cli;
mod crash;
mod follow;
mod graphs;
mod hubs;
mod learning;
mod replicas;
mod survival;
mod util;
mod worker_stop;
