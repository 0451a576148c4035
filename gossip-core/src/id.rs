//! Identifier newtypes used throughout the protocol.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a cluster member: the address other members reach it at.
///
/// SWIM identifies members by where they listen. A process that restarts on the
/// same address is told apart from its predecessor by its [`Generation`].
///
/// In human-readable formats (JSON, TOML) it is the address as text. On the
/// wire it is the address family, the IP's bytes and the port as two fixed
/// bytes (7 bytes for IPv4, 19 for IPv6): ports are mostly above 16,383,
/// where a varint would take three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(SocketAddr);

/// The compact encoding of a [`NodeId`].
#[derive(Serialize, Deserialize)]
enum CompactAddr {
    V4([u8; 4], [u8; 2]),
    V6([u8; 16], [u8; 2]),
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return self.0.serialize(serializer);
        }
        let port = self.0.port().to_le_bytes();
        match self.0 {
            SocketAddr::V4(v4) => CompactAddr::V4(v4.ip().octets(), port),
            SocketAddr::V6(v6) => CompactAddr::V6(v6.ip().octets(), port),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            return SocketAddr::deserialize(deserializer).map(Self);
        }
        Ok(Self(match CompactAddr::deserialize(deserializer)? {
            CompactAddr::V4(ip, port) => SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(ip),
                u16::from_le_bytes(port),
            )),
            CompactAddr::V6(ip, port) => SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                u16::from_le_bytes(port),
                0,
                0,
            )),
        }))
    }
}

impl NodeId {
    /// Wraps the address a member listens on.
    pub const fn new(addr: SocketAddr) -> Self {
        Self(addr)
    }

    /// The address to send this member's datagrams to.
    pub const fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl From<SocketAddr> for NodeId {
    fn from(addr: SocketAddr) -> Self {
        Self(addr)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which life of a process at a [`NodeId`] this is.
///
/// A restarted process must pick a generation larger than any it used before
/// (for example its start time in milliseconds since the Unix epoch), so
/// every member treats it as a new process whatever incarnation its previous
/// life had reached. A running node also moves to the next generation by
/// itself if its incarnations run out.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Generation(pub u64);

/// A member's own counter for refuting rumours about itself.
///
/// Only the member itself raises its incarnation: to refute a suspicion, to
/// publish new metadata, or to announce that it leaves.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Incarnation(pub u32);

impl Incarnation {
    /// The next incarnation, saturating at the maximum.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// Identifies one application broadcast: its origin, the origin's life, and
/// the origin's counter (from 1) within that life, so a restarted process
/// never reuses an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The member that originated the broadcast.
    pub origin: NodeId,
    /// The origin's generation when it broadcast.
    pub generation: u64,
    /// The origin's sequence number for it, from 1.
    pub sequence: u64,
}
