//! Keysources: every key, certificate and password field in a policy names
//! one of these instead of holding the secret itself.

mod secret;
mod source;
pub mod vault;

pub use secret::Secret;
pub use source::{KeySource, KeySourceError, VaultSource};
