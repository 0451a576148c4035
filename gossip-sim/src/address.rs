//! Where simulated nodes listen.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// Port every simulated node listens on under [`Addressing::Loopback`]
/// (addresses differ by IP).
pub const SIM_PORT: u16 = 7946;

/// Address of simulated node `index` under [`Addressing::Loopback`]:
/// 127.0.0.0/8 loopback addresses, so a simulated address can never name a
/// real remote host.
pub fn node_addr(index: usize) -> SocketAddr {
    let raw = u32::from(Ipv4Addr::new(127, 0, 0, 1)) + index as u32;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(raw), SIM_PORT))
}

/// Inverse of [`node_addr`].
pub fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.port() == SIM_PORT => {
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 1));
            u32::from(*a.ip()).checked_sub(base).map(|i| i as usize)
        }
        _ => None,
    }
}

/// How node indices map to socket addresses.
///
/// The address is a node's identity on the wire, so the plan decides frame
/// sizes too: IPv6 identities are the longest the wire carries, which is
/// what frame-size accounting must survive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Addressing {
    /// Node `i` at `127.0.0.1 + i`, port [`SIM_PORT`] (see [`node_addr`]):
    /// room for millions of nodes.
    #[default]
    Loopback,
    /// Node `i` at `ip`, port `first_port + i`: few nodes, any address family.
    Ports {
        /// The address every node shares.
        ip: IpAddr,
        /// Port of node 0.
        first_port: u16,
    },
}

impl Addressing {
    /// Address of node `index` (indices past the cluster name strangers).
    ///
    /// # Panics
    /// Under [`Addressing::Ports`], if `first_port + index` exceeds 65535.
    pub fn addr(&self, index: usize) -> SocketAddr {
        match *self {
            Addressing::Loopback => node_addr(index),
            Addressing::Ports { ip, first_port } => {
                let port = u16::try_from(index)
                    .ok()
                    .and_then(|i| first_port.checked_add(i))
                    .expect("node index fits the port range");
                SocketAddr::new(ip, port)
            }
        }
    }

    /// Index of the node listening at `addr`, if the plan has one there
    /// (the caller checks it against the cluster size).
    pub fn index(&self, addr: SocketAddr) -> Option<usize> {
        match *self {
            Addressing::Loopback => node_index(addr),
            Addressing::Ports { ip, first_port } => (addr.ip() == ip)
                .then(|| addr.port().checked_sub(first_port))
                .flatten()
                .map(usize::from),
        }
    }
}
