//! Transports for tests (feature `test-util`): an in-memory network and a
//! fault-injecting wrapper.
//!
//! Kernel traffic shaping is not always available, so loss, delay,
//! duplication and reordering are injected in-process by [`Faulty`], which
//! wraps any [`Transport`](crate::Transport). [`MemoryNetwork`] connects
//! nodes in one process without sockets, and with tokio's paused clock a
//! whole cluster's minutes run in milliseconds.

mod faulty;
mod memory;

pub use faulty::{Faults, Faulty};
pub use memory::{MemoryNetwork, MemoryTransport, DEFAULT_QUEUE_LEN};
