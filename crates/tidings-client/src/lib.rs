//! A Rust Server-Sent Events client.
