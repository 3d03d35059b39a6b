//! The token lifecycle (api.md section 4), shared by the controller's refreshes, the OAuth
//! callback and deauthorization:
//!
//! - `secret`: the token Secret's layout (api.md section 4), read into and built from a record;
//! - `problem`: typed grant problems, as recorded in the token Secret;
//! - `fence`: the claim a refresher records before it sends a refresh token;
//! - `pending`: a grant Zoom issued that is not stored yet;
//! - `transition`: every change to a token Secret, as a pure function of its record;
//! - `store`: the one writer, which applies a transition by compare-and-swap;
//! - `known` and `cached`: what this process knows of token Secrets without asking (the
//!   lease holder's watch, kept compact, and its own writes).

mod cached;
mod fence;
mod known;
mod pending;
mod problem;
pub mod secret;
pub mod store;
pub mod transition;

pub use cached::TokenSecrets;
pub use fence::{check_fence, spent_message, token_hash, Fence, FenceCheck, FENCE_TTL};
pub use known::KnownSecrets;
pub use pending::{not_stored_message, pending_fit, PendingFit, PendingGrant};
pub use problem::{GrantProblem, GrantReason, APP_DISABLED};
pub use store::{is_transient, StoreError, TokenStore};
pub use transition::Change;
