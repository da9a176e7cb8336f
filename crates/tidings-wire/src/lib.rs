//! The Server-Sent Events wire format, with no I/O: an encoder and an incremental parser.
//!
//! This crate is pure data in, data out. It never touches a socket, a clock or a runtime, so
//! every behaviour is tested byte for byte and the fuzzer reaches it directly. The hub uses
//! the encoder, the client and `tidings parse` use the parser.
//!
//! # Layout
//! - [`encode`](Event::encode) (module `encode`): an [`Event`] becomes one immutable
//!   [`Bytes`], encoded once and shared by every connection that receives it; plus
//!   [`encode_comment`] (heartbeats) and [`encode_retry`]. Fields that would corrupt the stream
//!   are an [`EncodeError`], never a panic.
//! - [`Parser`] (module `parse`): follows the WHATWG HTML "Interpreting an event stream" and
//!   "Dispatching the event" rules exactly, whatever the chunk boundaries, and bounds the
//!   length of a line ([`ParseError`]).
//! - [`Item`] and [`MessageEvent`] (module `item`): what the parser hands back.
//!
//! # Round trip
//! ```
//! use tidings_wire::{Event, Item, MessageEvent, Parser};
//! let wire = Event::new("a\nb").with_event("update").with_id("42").encode()?;
//! let mut items = Vec::new();
//! Parser::new().feed(&wire, &mut items)?;
//! assert_eq!(items, [Item::Event(MessageEvent {
//!     event: "update".into(), data: "a\nb".into(), id: "42".into(),
//! })]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `docs/WIRE.md` at the repository root states the guarantees, the measured speed and how to
//! fuzz.

mod encode;
mod item;
mod parse;

pub use bytes::{Bytes, BytesMut};
pub use encode::{encode_comment, encode_retry, EncodeError, Event};
pub use item::{Item, MessageEvent};
pub use parse::{ParseError, Parser, DEFAULT_MAX_EVENT_LEN, DEFAULT_MAX_LINE_LEN};
