//! The crate's one error type (placeholder, filled in by the foundation).
/// Placeholder.
#[derive(Debug)]
pub struct Error;
/// Placeholder.
pub type Result<T> = std::result::Result<T, Error>;
