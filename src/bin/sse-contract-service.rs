//! The SSE client contract service.
fn main() {}
