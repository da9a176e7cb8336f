//! `tidings parse [FILE]`: reads an event stream and prints what a browser would see, one JSON
//! object per line, as it arrives.
//!
//! Output lines, in stream order:
//! - `{"event": "<type>", "data": "<data>", "id": "<last event ID>"}` for each dispatched event;
//! - `{"retry": <ms>}` for each valid `retry` field;
//! - `{"comment": "<text>"}` for each comment line, with `--comments`.
//!
//! It streams: output is flushed every time the input runs dry, before waiting for more, so
//! `curl -N … | tidings parse` shows each event when it arrives. An event left unterminated at
//! end of input is discarded, as a browser would.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::json_line::JsonLine;
use anyhow::Context as _;
use tidings_wire::{Item, Parser};

/// Arguments of `tidings parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// The file to read; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    /// Also print comments as `{"comment": "..."}`.
    #[arg(long)]
    pub comments: bool,
}

/// Runs `tidings parse`.
pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout().lock();
    match args.file.as_deref() {
        None => run_on(io::stdin().lock(), stdout, args.comments),
        Some(path) if path == Path::new("-") => run_on(io::stdin().lock(), stdout, args.comments),
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            run_on(file, stdout, args.comments)
                .with_context(|| format!("while parsing {}", path.display()))
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

/// Parses everything `reader` yields and writes one JSON line per item to `writer`.
///
/// A reader that went away (a closed pipe, as in `tidings parse | head`) ends the run quietly:
/// no one is left to tell.
pub fn run_on(mut reader: impl Read, writer: impl Write, comments: bool) -> anyhow::Result<()> {
    let mut parser = Parser::new().with_comments(comments);
    let mut out = io::BufWriter::new(writer);
    let mut buf = vec![0; 64 * 1024];
    let mut items = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("cannot read the input"),
        };
        // Items completed before a parse error are still printed, then the error is reported.
        let parsed = parser.feed(&buf[..n], &mut items);
        let written = items
            .drain(..)
            .try_for_each(|item| write_item(&mut out, &item));
        match written.and_then(|()| out.flush()) {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            result => result.context("cannot write the output")?,
        }
        parsed?;
    }
    parser.finish();
    Ok(())
}

fn write_item(out: &mut impl Write, item: &Item) -> io::Result<()> {
    let line = match item {
        Item::Event(e) => JsonLine::event(&e.event, &e.data, &e.id),
        Item::Retry(ms) => JsonLine::Retry {
            retry: u128::from(*ms),
        },
        Item::Comment(text) => JsonLine::Comment { comment: text },
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn run_str(input: &[u8], comments: bool) -> String {
        let mut out = Vec::new();
        run_on(input, &mut out, comments).expect("valid input");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    #[test]
    fn prints_one_json_object_per_event_retry_and_comment_in_stream_order() {
        let input = b": hi\nretry: 500\nid: 7\nevent: tick\ndata: a\ndata: b\n\ndata: c\n\n";
        let expected = concat!(
            "{\"comment\":\"hi\"}\n",
            "{\"retry\":500}\n",
            "{\"event\":\"tick\",\"data\":\"a\\nb\",\"id\":\"7\"}\n",
            "{\"event\":\"message\",\"data\":\"c\",\"id\":\"7\"}\n",
        );
        assert_eq!(run_str(input, true), expected);
    }

    #[test]
    fn comments_are_not_printed_without_the_flag() {
        assert_eq!(
            run_str(b": hi\ndata: x\n\n", false),
            "{\"event\":\"message\",\"data\":\"x\",\"id\":\"\"}\n"
        );
    }

    #[test]
    fn unterminated_event_at_end_of_input_is_not_printed() {
        assert_eq!(
            run_str(b"data: done\n\ndata: cut", false).lines().count(),
            1
        );
    }

    #[test]
    fn invalid_utf8_and_control_characters_come_out_as_valid_json() {
        let out = run_str(b"data: \xFF\x01\"\n\n", false);
        let value: serde_json::Value = serde_json::from_str(out.trim_end()).expect("valid JSON");
        assert_eq!(value["data"], "\u{FFFD}\u{1}\"");
    }

    #[test]
    fn empty_input_prints_nothing() {
        assert_eq!(run_str(b"", true), "");
    }

    /// A writer that several owners can read back, to observe what was flushed when.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Yields its chunks one read at a time, recording what the writer held at each read.
    struct Chunks {
        chunks: Vec<&'static [u8]>,
        seen: Shared,
        lines_at_each_read: Vec<usize>,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let lines = self.seen.0.borrow().iter().filter(|&&b| b == b'\n').count();
            self.lines_at_each_read.push(lines);
            if self.chunks.is_empty() {
                return Ok(0);
            }
            let chunk = self.chunks.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn output_is_flushed_before_waiting_for_more_input() {
        let seen = Shared::default();
        let mut reader = Chunks {
            chunks: vec![b"data: 1\n\nda", b"ta: 2\n", b"\n"],
            seen: seen.clone(),
            lines_at_each_read: Vec::new(),
        };
        run_on(&mut reader, seen.clone(), false).expect("valid input");
        assert_eq!(reader.lines_at_each_read, vec![0, 1, 1, 2]);
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_after_printing_what_came_before() {
        let mut input = b"data: ok\n\ndata: ".to_vec();
        input.resize(input.len() + tidings_wire::DEFAULT_MAX_LINE_LEN, b'x');
        let mut out = Vec::new();
        let err = run_on(&input[..], &mut out, false).expect_err("line too long");
        assert!(err.to_string().contains("line longer than"), "{err:#}");
        assert_eq!(
            out,
            b"{\"event\":\"message\",\"data\":\"ok\",\"id\":\"\"}\n"
        );
    }

    #[test]
    fn a_closed_output_pipe_ends_the_run_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        run_on(&b"data: x\n\n"[..], Closed, false).expect("a closed pipe is not an error");
    }
}
