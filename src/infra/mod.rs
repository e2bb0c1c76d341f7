//! Plumbing that belongs to no stage: the clock, group commit, the shutdown
//! signal, latency histograms.

pub mod batch;
pub mod clock;
pub mod histogram;
pub mod json;
pub mod shutdown;
