//! Leader election and partition awareness in the agent: the hosted
//! applications, `GET /v1/leader`, their events on the event stream and
//! their Prometheus metrics.
//!
//! The agent hosts a [`LeaderElection`] and a [`PartitionWatch`] beside its
//! node (both with default configuration). A task drains their events
//! after every node event (and at least once a second) and publishes them
//! as `{"event":"leader","leader","term","has_quorum"}`,
//! `{"event":"partition_suspected","lost"}` and
//! `{"event":"partition_healed","still_lost"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use gossip_agent::AgentError;
use gossip_apps::{
    LeaderConfig, LeaderElection, LeaderEvent, LeaderStatus, PartitionConfig, PartitionEvent,
    PartitionStatus, PartitionWatch,
};
use gossip_core::Aggregate;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use crate::api::{ApiError, Shared};

/// The leader and partition metrics.
#[derive(Debug, Default)]
pub struct LeaderMetrics {
    is_leader: Gauge,
    term: Gauge,
    has_quorum: Gauge,
    leader_changes: Counter,
    partition_suspected: Gauge,
    partition_lost: Gauge,
    partitions: Counter,
}

impl LeaderMetrics {
    /// Registers the metrics in `registry` (prefix `gossip_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "leader_is_leader",
            "1 if this node leads",
            m.is_leader.clone(),
        );
        registry.register(
            "leader_term",
            "The term this node shows (never goes down)",
            m.term.clone(),
        );
        registry.register(
            "leader_has_quorum",
            "1 if this node sees a majority of the agreed membership",
            m.has_quorum.clone(),
        );
        registry.register(
            "leader_changes",
            "Changes of leader, term or quorum seen here",
            m.leader_changes.clone(),
        );
        registry.register(
            "partition_suspected",
            "1 while a partition is suspected",
            m.partition_suspected.clone(),
        );
        registry.register(
            "partition_lost_members",
            "Members of the suspected partition's lost set still unreachable",
            m.partition_lost.clone(),
        );
        registry.register(
            "partitions_suspected",
            "Partitions suspected since start",
            m.partitions.clone(),
        );
        m
    }

    fn update(&self, leader: &LeaderStatus, partition: &PartitionStatus) {
        self.is_leader.set(i64::from(leader.is_leader));
        self.term.set(leader.term as i64);
        self.has_quorum.set(i64::from(leader.has_quorum));
        self.partition_suspected.set(i64::from(partition.suspected));
        self.partition_lost.set(partition.lost as i64);
        let seen = self.partitions.get();
        self.partitions
            .inc_by(partition.suspected_total.saturating_sub(seen));
    }
}

/// The leader status as the API shows it.
pub fn leader_json(leader: &LeaderStatus, partition: &PartitionStatus) -> Value {
    json!({
        "leader": leader.leader.map(|l| l.to_string()),
        "term": leader.term,
        "term_confirmed": leader.term_confirmed,
        "has_quorum": leader.has_quorum,
        "is_leader": leader.is_leader,
        "quorum_mode": leader.quorum_mode,
        "live": leader.live,
        "agreed": leader.agreed,
        "quorum_needed": leader.quorum_needed,
        "partition": {
            "suspected": partition.suspected,
            "lost": partition.lost,
            "reachable": partition.reachable,
            "suspected_total": partition.suspected_total,
            "healed_total": partition.healed_total,
        },
    })
}

type Drained = (LeaderStatus, PartitionStatus, Vec<Value>);

/// Brings both applications up to date and takes their events as JSON.
async fn drain<A: Aggregate + Send + 'static>(
    shared: &Shared<A>,
) -> Result<Option<Drained>, AgentError> {
    let leader = shared
        .agent
        .with_app(|election: &mut LeaderElection, cluster, now| {
            election.refresh(now, cluster);
            let mut events = Vec::new();
            while let Some(LeaderEvent::Changed {
                leader,
                term,
                has_quorum,
            }) = election.poll_event()
            {
                events.push(json!({
                    "event": "leader",
                    "leader": leader.map(|l| l.to_string()),
                    "term": term,
                    "has_quorum": has_quorum,
                }));
            }
            (election.status(), events)
        })
        .await?;
    let partition = shared
        .agent
        .with_app(|watch: &mut PartitionWatch, _, _| {
            let mut events = Vec::new();
            while let Some(event) = watch.poll_event() {
                events.push(match event {
                    PartitionEvent::PartitionSuspected { lost } => {
                        json!({"event": "partition_suspected", "lost": lost})
                    }
                    PartitionEvent::PartitionHealed { still_lost } => {
                        json!({"event": "partition_healed", "still_lost": still_lost})
                    }
                    _ => json!({"event": "partition"}),
                });
            }
            (watch.status(), events)
        })
        .await?;
    Ok(leader.zip(partition).map(|((l, mut le), (p, pe))| {
        le.extend(pe);
        (l, p, le)
    }))
}

/// Hosts leader election and the partition watch beside `shared`'s node,
/// and starts the task that publishes their events and metrics. Call
/// before joining, so the applications see every membership event.
pub async fn host<A: Aggregate + Send + 'static>(
    shared: &Arc<Shared<A>>,
    leader: LeaderConfig,
    partition: PartitionConfig,
) -> Result<(), AgentError> {
    shared.agent.add_app(LeaderElection::new(leader)).await?;
    shared.agent.add_app(PartitionWatch::new(partition)).await?;
    let shared = Arc::clone(shared);
    let mut node_events = shared.agent.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = node_events.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match drain(&shared).await {
                Ok(Some((leader, partition, events))) => {
                    shared
                        .metrics
                        .leader
                        .leader_changes
                        .inc_by(events.iter().filter(|e| e["event"] == "leader").count() as u64);
                    shared.metrics.leader.update(&leader, &partition);
                    for event in events {
                        let _ = shared.events.send(Arc::new(event));
                    }
                }
                Ok(None) => return,
                Err(_) => return,
            }
        }
    });
    Ok(())
}

/// `GET /v1/leader`.
pub async fn leader<A: Aggregate + Send + 'static>(
    State(s): State<Arc<Shared<A>>>,
) -> Result<Json<Value>, ApiError> {
    match drain(&s).await? {
        Some((leader, partition, events)) => {
            for event in events {
                let _ = s.events.send(Arc::new(event));
            }
            Ok(Json(leader_json(&leader, &partition)))
        }
        None => Err(ApiError::unavailable("leader election is not hosted")),
    }
}

/// `gossip-node leader`'s table.
pub fn write_leader(out: &mut impl std::io::Write, v: &Value) -> anyhow::Result<()> {
    let leader = v["leader"].as_str().unwrap_or("none");
    writeln!(
        out,
        "leader      {leader}{}",
        if v["is_leader"] == true {
            " (this node)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "term        {}{}",
        v["term"],
        if v["term_confirmed"] == true {
            ""
        } else {
            " (not yet confirmed by the leader)"
        }
    )?;
    writeln!(
        out,
        "quorum      {} ({} live, {} agreed, {} needed)",
        v["has_quorum"], v["live"], v["agreed"], v["quorum_needed"]
    )?;
    let p = &v["partition"];
    if p["suspected"] == true {
        writeln!(
            out,
            "partition   SUSPECTED: {} members unreachable",
            p["lost"]
        )?;
    } else {
        writeln!(
            out,
            "partition   none suspected ({} reachable)",
            p["reachable"]
        )?;
    }
    Ok(())
}
