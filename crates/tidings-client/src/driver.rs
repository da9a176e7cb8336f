//! The driver: the state machine behind an [`EventStream`](crate::EventStream).
//!
//! It is in one of four phases: connecting, reading an open stream, waiting before a
//! reconnection, or done. Each step of [`Driver::next`] runs the current phase until it has
//! something to report, queues the items, and moves on. Commands from a
//! [`Handle`](crate::Handle) are watched in every phase, so a restart or a close takes effect
//! at once, even in the middle of a read or a wait.
//!
//! Every decision about retrying is made in [`Driver::fail`], and every delay comes from
//! [`Backoff`].

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tidings_wire::{Item, ParseError, Parser};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::connect::{self, HttpClient, Outcome};
use crate::item::{CloseReason, Event, Open, Reset, SseItem};
use crate::Error;

/// What a [`Handle`](crate::Handle) can ask of the driver.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Command {
    Restart,
    Close,
}

enum Phase {
    Connect,
    Read { body: Incoming, opened_at: Instant },
    Wait(Duration),
    Done,
}

pub(crate) struct Driver {
    config: Config,
    http: HttpClient,
    parser: Parser,
    backoff: Backoff,
    /// Connection attempts in the current run: since the stream was last healthy, or since
    /// the caller restarted it.
    attempt: u32,
    phase: Phase,
    pending: VecDeque<SseItem>,
    parsed: Vec<Item>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Held so that `commands` never reports "closed" when every handle is dropped: the
    /// stream then simply runs on, commanded by no one.
    _commands_tx: mpsc::UnboundedSender<Command>,
}

/// What woke a phase up.
enum Wake<T> {
    Command(Command),
    Done(T),
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        commands: mpsc::UnboundedReceiver<Command>,
        commands_tx: mpsc::UnboundedSender<Command>,
    ) -> Self {
        let t = &config.tuning;
        let parser = Parser::new()
            .with_max_line_len(t.max_line_len)
            .with_comments(t.comments)
            .with_last_event_id(&t.last_event_id);
        let backoff = Backoff {
            base: t.initial_delay,
            factor: t.backoff_factor,
            max: t.max_delay,
            jitter: t.jitter,
        };
        Driver {
            http: connect::http_client(&config),
            config,
            parser,
            backoff,
            attempt: 0,
            phase: Phase::Connect,
            pending: VecDeque::new(),
            parsed: Vec::new(),
            commands,
            _commands_tx: commands_tx,
        }
    }

    /// The next item; `None` once the stream has closed.
    pub(crate) async fn next(&mut self) -> Option<SseItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Connect => self.connect().await,
                Phase::Read { body, opened_at } => self.read(body, opened_at).await,
                Phase::Wait(delay) => self.wait(delay).await,
            }
        }
    }

    async fn connect(&mut self) {
        self.attempt += 1;
        self.parser.reset();
        let wake = {
            let attempt = connect::connect(&self.http, &self.config, self.parser.last_event_id());
            tokio::select! {
                biased;
                Some(command) = self.commands.recv() => Wake::Command(command),
                outcome = attempt => Wake::Done(outcome),
            }
        };
        match wake {
            Wake::Command(command) => self.obey(command),
            Wake::Done(Ok(Outcome::Stream { url, response })) => {
                let (head, body) = (*response).into_parts();
                self.pending.push_back(SseItem::Open(Open {
                    url,
                    status: head.status,
                    headers: head.headers,
                }));
                self.phase = Phase::Read {
                    body,
                    opened_at: Instant::now(),
                };
            }
            Wake::Done(Ok(Outcome::NoContent)) => self.close(CloseReason::NoContent),
            Wake::Done(Err(error)) => self.fail(error, None),
        }
    }

    async fn read(&mut self, mut body: Incoming, opened_at: Instant) {
        let wake = tokio::select! {
            biased;
            Some(command) = self.commands.recv() => Wake::Command(command),
            chunk = next_chunk(&mut body, self.config.tuning.read_timeout) => Wake::Done(chunk),
        };
        match wake {
            Wake::Command(command) => {
                self.parser.finish();
                self.obey(command);
            }
            Wake::Done(Ok(Some(chunk))) => {
                let fed = self.parser.feed(&chunk, &mut self.parsed);
                for item in self.parsed.drain(..) {
                    let item = match item {
                        Item::Event(event) => classify(event.into(), &self.config),
                        Item::Comment(text) => SseItem::Comment(text),
                        Item::Retry(ms) => {
                            self.backoff.base = Duration::from_millis(ms);
                            SseItem::Retry(self.backoff.base)
                        }
                    };
                    self.pending.push_back(item);
                }
                match fed {
                    Ok(()) => self.phase = Phase::Read { body, opened_at },
                    Err(ParseError::LineTooLong { limit }) => {
                        self.fail(Error::LineTooLong { limit }, Some(opened_at));
                    }
                    Err(other) => self.fail(Error::Parse(other), Some(opened_at)),
                }
            }
            Wake::Done(Ok(None)) => {
                // An event still missing its blank line is discarded, as the standard says.
                self.parser.finish();
                self.fail(Error::StreamEnded, Some(opened_at));
            }
            Wake::Done(Err(error)) => {
                self.parser.finish();
                self.fail(error, Some(opened_at));
            }
        }
    }

    async fn wait(&mut self, delay: Duration) {
        let wake = tokio::select! {
            biased;
            Some(command) = self.commands.recv() => Wake::Command(command),
            () = tokio::time::sleep(delay) => Wake::Done(()),
        };
        match wake {
            Wake::Command(command) => self.obey(command),
            Wake::Done(()) => self.phase = Phase::Connect,
        }
    }

    /// A caller's restart is not a failure: it starts a new run, at once.
    fn obey(&mut self, command: Command) {
        match command {
            Command::Restart => {
                self.attempt = 0;
                self.pending.push_back(SseItem::Reconnecting {
                    delay: Duration::ZERO,
                    attempt: 1,
                });
                self.phase = Phase::Connect;
            }
            Command::Close => self.close(CloseReason::Requested),
        }
    }

    /// The one place that decides whether to reconnect, and when.
    fn fail(&mut self, error: Error, opened_at: Option<Instant>) {
        if opened_at.is_some_and(|t| t.elapsed() >= self.config.tuning.healthy_after) {
            self.attempt = 0;
        }
        let retryable = error.is_retryable();
        let exhausted = self
            .config
            .tuning
            .max_attempts
            .is_some_and(|max| self.attempt >= max);
        let will_retry = retryable && !exhausted;
        let server_asked = error.retry_after().unwrap_or_default();
        self.pending.push_back(SseItem::Error { error, will_retry });
        if will_retry {
            let delay = self
                .backoff
                .delay(self.attempt, rand::random::<f64>())
                .max(server_asked);
            self.pending.push_back(SseItem::Reconnecting {
                delay,
                attempt: self.attempt + 1,
            });
            self.phase = Phase::Wait(delay);
        } else if retryable {
            self.close(CloseReason::AttemptsExhausted);
        } else {
            self.close(CloseReason::Fatal);
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.pending.push_back(SseItem::Closed(reason));
        self.phase = Phase::Done;
    }
}

fn classify(event: Event, config: &Config) -> SseItem {
    if !config.tuning.recognise_reset {
        return SseItem::Event(event);
    }
    match Reset::recognise(event) {
        Ok(reset) => SseItem::Reset(reset),
        Err(event) => SseItem::Event(event),
    }
}

/// The next non-empty chunk of the body; `None` at its end. Any byte resets the read timeout,
/// even one that completes nothing.
async fn next_chunk(
    body: &mut Incoming,
    timeout: Option<Duration>,
) -> Result<Option<Bytes>, Error> {
    loop {
        let frame = match timeout {
            None => body.frame().await,
            Some(limit) => tokio::time::timeout(limit, body.frame())
                .await
                .map_err(|_| Error::ReadTimeout(limit))?,
        };
        match frame {
            None => return Ok(None),
            Some(Err(err)) => return Err(Error::Body(Box::new(err))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}
