//! Encode and parse throughput. Run with `cargo bench -p tidings-wire`; docs/WIRE.md records
//! the figures and the goals (parse >= 1 GB/s on large data events, encode >= 5 million small
//! events/s on one core).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidings_wire::{BytesMut, Event, Item, Parser};

/// A typical hub event: a short JSON payload with an id and a type.
const SMALL_DATA: &str = r#"{"orderId":42,"status":"shipped","eta":"2024-06-01T12:00:00Z"}"#;

fn small_event() -> Event<'static> {
    Event::new(SMALL_DATA)
        .with_id("00000000000000012345")
        .with_event("order")
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_event", |b| {
        b.iter(|| black_box(small_event()).encode())
    });
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("small_event_into_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            black_box(small_event()).encode_into(&mut buf)
        })
    });
    let multi_line = "a line of text that a human wrote\n".repeat(16);
    group.bench_function("sixteen_line_event", |b| {
        b.iter(|| Event::new(black_box(&multi_line)).with_id("1").encode())
    });
    group.finish();

    let mut group = c.benchmark_group("encode_large");
    let large = "x".repeat(1 << 20);
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("one_mib_data", |b| {
        b.iter(|| Event::new(black_box(&large)).encode())
    });
    group.finish();
}

/// Feeds `stream` in `chunk`-sized pieces, as network reads would deliver it, and drops the
/// items after each piece, as a client handing events on to its user would. (Keeping all of
/// them alive instead mostly measures the allocator and the kernel's page faults.)
fn parse_all(stream: &[u8], chunk: usize, items: &mut Vec<Item>) {
    let mut parser = Parser::new();
    for piece in stream.chunks(chunk) {
        parser
            .feed(piece, items)
            .expect("within the default line limit");
        items.clear();
    }
    parser.finish();
}

fn encoded_stream(events: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut wire = BytesMut::new();
    for (n, data) in events.into_iter().enumerate() {
        let id = n.to_string();
        Event::new(&data)
            .with_id(&id)
            .encode_into(&mut wire)
            .expect("valid event");
    }
    wire.to_vec()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_large");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    // 16 events of 1 MiB of JSON-like data each, on one line.
    let payload: String = r#"{"k":"value","n":12345},"#.repeat((1 << 20) / 24);
    let large = encoded_stream(std::iter::repeat_n(payload, 16));
    group.throughput(Throughput::Bytes(large.len() as u64));
    let mut items = Vec::new();
    for chunk in [16 * 1024, 64 * 1024, large.len()] {
        let name = if chunk == large.len() {
            "whole".to_owned()
        } else {
            format!("{}k", chunk / 1024)
        };
        group.bench_with_input(
            BenchmarkId::new("one_mib_events", name),
            &chunk,
            |b, &chunk| b.iter(|| parse_all(black_box(&large), chunk, &mut items)),
        );
    }
    // 16 events of 1 MiB each, as 80-byte lines (text published with "text").
    let lines: String = format!("{}\n", "y".repeat(79)).repeat((1 << 20) / 80);
    let multi_line = encoded_stream(std::iter::repeat_n(lines, 16));
    group.throughput(Throughput::Bytes(multi_line.len() as u64));
    group.bench_function("one_mib_events_of_80_byte_lines/64k", |b| {
        b.iter(|| parse_all(black_box(&multi_line), 64 * 1024, &mut items))
    });
    group.finish();

    let mut group = c.benchmark_group("parse_small");
    let count = 10_000;
    let small = encoded_stream(std::iter::repeat_n(SMALL_DATA.to_owned(), count));
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("10k_small_events/64k", |b| {
        b.iter(|| parse_all(black_box(&small), 64 * 1024, &mut items))
    });
    group.finish();
}

/// Short runs: the development machine has two cores shared with other builds.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, parse
}
criterion_main!(benches);
