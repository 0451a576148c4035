//! Per-round cost of each aggregation algorithm in math mode: ten rounds of
//! N nodes timed together, reported per node-round. No sockets.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gossip_aggregate::{Algorithm, AnyAggregate, Function, Input};
use gossip_sim::{run_aggregation, AggregationProbe, AggregationScenario, RoundStats};

const ROUNDS: u32 = 10;

fn algorithms() -> [(&'static str, Algorithm); 3] {
    [
        ("push-sum", Algorithm::PushSum),
        ("push-pull", Algorithm::PushPull),
        ("flow-updating", Algorithm::FlowUpdating { degree: 4 }),
    ]
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(10);
    for n in [1000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64 * u64::from(ROUNDS)));
        for (name, algorithm) in algorithms() {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter(|| {
                    let mut last = 0.0;
                    run_aggregation(
                        &AggregationScenario {
                            nodes: n,
                            seed: 1,
                            rounds: ROUNDS,
                            loss: 0.0,
                            churn: 0.0,
                        },
                        AggregationProbe {
                            make: |_slot, value, leader, _newcomer| {
                                AnyAggregate::new(
                                    algorithm,
                                    Function::Average,
                                    Input { value, leader },
                                    None,
                                )
                            },
                            truth: |inputs: &[f64]| {
                                inputs.iter().sum::<f64>() / inputs.len() as f64
                            },
                            mass: AnyAggregate::mass,
                            observe: |stats: &RoundStats, _: &[Option<f64>]| {
                                last = stats.max_rel_error
                            },
                        },
                    );
                    last
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
