//! Per-round and per-received-message cost of every strategy, at N=100 and
//! N=1000, side by side. No sockets: rounds run in the simulator's math
//! mode, received messages go through a real `Node`'s `handle_message`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use gossip_benches::{all_strategies, node_in_cluster, rumor_frame};
use gossip_sim::{node_addr, MathScenario, MathSim};

fn strategies(c: &mut Criterion) {
    let mut group = c.benchmark_group("strategies");
    group.sample_size(20);
    for n in [100usize, 1000] {
        for (name, strategy) in all_strategies() {
            // One synchronous round of all N nodes, taken from the middle of a
            // dissemination (three rounds in), reported per node-round.
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(format!("round/{name}"), n), &n, |b, &n| {
                b.iter_batched(
                    || {
                        let mut scenario = MathScenario::new(n, 1);
                        scenario.origin = 1;
                        let mut sim = MathSim::new(&scenario, &strategy);
                        for _ in 0..3 {
                            sim.step();
                        }
                        sim
                    },
                    |mut sim| sim.step(),
                    BatchSize::LargeInput,
                )
            });
            // One received rumor in a real node: decode, store, deliver, and
            // the strategy's reaction, encoded.
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(
                BenchmarkId::new(format!("receive/{name}"), n),
                &n,
                |b, &n| {
                    let now = Instant::now();
                    let mut node = node_in_cluster(strategy.clone(), n, now);
                    let mut sequence = 0u64;
                    let from = node_addr(1);
                    b.iter(|| {
                        sequence += 1;
                        node.handle_message(now, from, &rumor_frame(sequence))
                            .expect("valid frame");
                        while node.poll_transmit().is_some() {}
                        while node.poll_event().is_some() {}
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, strategies);
criterion_main!(benches);
