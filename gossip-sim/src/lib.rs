//! Deterministic discrete-event simulator for the gossip workspace, and the
//! one harness its tests, fuzz targets and experiments run on.
//!
//! [`Simulator`] runs real [`gossip_core::Node`]s that exchange real encoded
//! frames over a modelled network ([`LinkModel`]: latency, loss, duplication,
//! reordering) in virtual time, with partitions, blocked links, crashes,
//! restarts and slow nodes. One seed fixes every random choice, so a run
//! replays exactly. [`SimBuilder`] sets what a test needs on top: explicit
//! node seeds and generations, the address plan ([`Addressing`]), a record
//! of every frame and event ([`FrameRecord`], [`EventRecord`]), and
//! [`Drive::Manual`] for fuzzing, where the caller delivers frames and fires
//! timers. [`check`] holds the node invariants tests and fuzz targets assert.
//!
//! Experiments: [`run_membership`] (behind `gossip-node sim membership`),
//! [`run_full_dissemination`] and [`run_full_aggregation`] (the `--full`
//! modes of `sim dissemination` and `sim aggregation`) on real nodes, and
//! math mode ([`run_math`], [`run_aggregation`]) with oracle sampling for
//! runs of up to a million nodes; [`run_partial`] runs the partial-view
//! overlay (`gossip_core::partial`) at 10^5 nodes with a mass crash.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod adversary;
mod aggregation;
mod apps;
mod blocks;
pub mod check;
mod full;
mod kv;
mod leader;
mod math;
mod net;
mod partial;
mod partition;
mod scenario;
mod stream;
mod trace;

pub use address::{node_addr, node_index, Addressing, SIM_PORT};
pub use adversary::{
    Adversary, AdversaryKind, AdversarySpec, ATTACKER_ADDR, FORGED_PAYLOAD, VICTIM_ADDR,
};
pub use aggregation::{run_aggregation, AggregationProbe, AggregationScenario, RoundStats};
pub use apps::AppSim;
pub use blocks::{run_blocks, BlockTransfer, BlocksReport, BlocksScenario};
pub use full::{
    run_full_aggregation, run_full_dissemination, FullAggregation, FullAggregationProbe,
    FullAggregationReport, FullDissemination, FullDisseminationReport,
};
pub use kv::{resurrection_runs, run_kv, KvReport, KvScenario, Resurrections};
pub use leader::{
    probe_cluster, run_leader, LeaderProbe, LeaderReport, LeaderSample, LeaderScenario,
};
pub use math::{run_math, MathRun, MathScenario, MathSim};
pub use net::{
    Drive, HeldFrame, Latency, LinkModel, NetStats, Observer, OutsiderFrame, OutsiderStats,
    SimBuilder, Simulator,
};
pub use partial::{run_partial, PartialReport, PartialScenario};
pub use partition::{run_partition, PartitionReport, PartitionScenario};
pub use scenario::{
    run_membership, run_membership_with, AttackReport, CrashTimeline, MembershipReport,
    MembershipScenario, Quantiles,
};
pub use stream::{run_stream, StreamReport, StreamScenario};
pub use trace::{event_member, EventKind, EventRecord, Fate, FrameRecord, Origin};
