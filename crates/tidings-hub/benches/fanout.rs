//! The fan-out path: one publish, encoded once, queued to N subscribers.
//!
//! `cargo bench -p tidings-hub --bench fanout`; figures in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidings_hub::bench_support::FanoutFixture;
use tidings_hub::Publish;

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fanout");
    for n in [1usize, 100, 1_000, 10_000] {
        let mut fixture = rt.block_on(async { FanoutFixture::new(n, "bench/topic") });
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("publish_and_enqueue", n), &n, |b, _| {
            b.iter(|| {
                let event = Publish::to_topic("bench/topic")
                    .event("tick")
                    .text(r#"{"seq":1,"ts":1795318325000000}"#);
                let published = rt.block_on(fixture.publish(event)).unwrap();
                assert_eq!(published.delivered, n);
                fixture.drain();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
