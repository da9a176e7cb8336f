//! The Server-Sent Events wire format, with no I/O.
