//! The Tidings hub engine.
