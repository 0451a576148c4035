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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            event_capacity: 4096,
            command_capacity: 256,
            leave_linger: Duration::from_secs(2),
        }
    }
}
