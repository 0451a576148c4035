//! Settings of the driver itself.

use std::time::Duration;

/// Settings of the driver itself (the protocol's are in the node's
/// [`Config`](gossip_core::Config)).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Events kept for subscribers that fall behind; a slower subscriber
    /// loses the oldest and is told how many (tokio `broadcast` semantics).
    pub event_capacity: usize,
    /// Commands queued from handles before senders wait.
    pub command_capacity: usize,
    /// After a graceful leave, how long the agent keeps running so that the
    /// departure is gossiped, at most. It stops earlier once the node has
    /// nothing left to send.
    pub leave_linger: Duration,
    /// Frames already waiting on the socket that the agent hands the node
    /// after the one that woke it, before it sends what the node queued:
    /// under load, what the node sends in answer to all of them leaves
    /// together (rumors for one member share a frame when the node's
    /// `coalesce_rumors` is on). At least 1; default 32, so that timers
    /// and commands still wait at most 32 frames.
    pub max_frames_per_flush: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            event_capacity: 4096,
            command_capacity: 256,
            leave_linger: Duration::from_secs(2),
            max_frames_per_flush: 32,
        }
    }
}
