//! Everything that speaks Zoom: the OAuth/API client and webhook signatures.

pub mod client;
pub mod rejection;
pub mod webhook;
