//! Plumbing that belongs to no stage: the clock, group commit, the shutdown signal.

pub mod batch;
pub mod clock;
pub mod json;
pub mod shutdown;
