//! Reference gossip node.
//!
//! Today this crate holds the command-line front end to the simulator
//! (`gossip-node sim membership`, `sim dissemination` and `sim aggregation`); the socket driver and the demo cluster come
//! with the transport issues.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregation;
pub mod cli;
pub mod dissemination;
