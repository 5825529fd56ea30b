//! Helpers shared by this crate's integration tests.

pub mod backends;
pub mod cfixture;
pub mod child;
