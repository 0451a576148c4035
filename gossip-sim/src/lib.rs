//! Deterministic discrete-event simulator for the gossip workspace.
//!
//! [`Simulator`] runs real [`gossip_core::Node`]s that exchange real encoded
//! frames over a modelled network ([`LinkModel`]: latency, loss, duplication,
//! reordering) in virtual time, with partitions, crashes, restarts and slow
//! nodes. One seed fixes every random choice, so a run replays exactly.
//! [`run_membership`] is the ready-made membership experiment behind
//! `gossip-node sim membership`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aggregation;
mod math;
mod net;
mod scenario;

pub use aggregation::{run_aggregation, AggregationProbe, AggregationScenario, RoundStats};
pub use math::{run_math, MathRun, MathScenario, MathSim};
pub use net::{node_addr, node_index, Latency, LinkModel, NetStats, Observer, Simulator, SIM_PORT};
pub use scenario::{
    run_membership, CrashTimeline, MembershipReport, MembershipScenario, Quantiles,
};
