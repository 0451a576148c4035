//! Helpers shared by the agent's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use gossip_agent::AgentHandle;
use gossip_core::{Aggregate, Event, Liveness, Strategy};
use tokio::sync::broadcast::Receiver;

/// The address of in-memory node `i`.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7000 + i as u16))
}

/// Waits (on the paused clock) until every agent reports `live` live
/// members, or panics after `limit`.
pub async fn await_live<S, A>(agents: &[AgentHandle<S, A>], live: usize, limit: Duration)
where
    S: Strategy + 'static,
    A: Aggregate + 'static,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut all = true;
        for agent in agents {
            let members = agent.members().await.unwrap();
            let alive = members
                .iter()
                .filter(|m| m.liveness == Liveness::Alive)
                .count();
            all &= alive == live;
        }
        if all {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members did not converge to {live} live within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drains `events` until `pick` matches, or panics after `limit`.
pub async fn await_event(
    events: &mut Receiver<Event>,
    limit: Duration,
    pick: impl Fn(&Event) -> bool,
) {
    tokio::time::timeout(limit, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if pick(&event) {
                return;
            }
        }
    })
    .await
    .expect("event within the limit");
}
