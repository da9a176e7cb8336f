//! The Tidings hub engine.
pub mod topic;
