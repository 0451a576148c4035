//! Checking a live connection's peer certificate again: TLS checks it once,
//! at the handshake, and a busy connection can outlive the certificate
//! (only silence ends it), so without a second look an expired node would
//! keep talking for as long as it keeps talking.

use quinn::Connection;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};

/// Which side of the handshake the peer was, which decides the key usage
/// its certificate was checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerRole {
    /// We dialled it: it authenticated as a server.
    Server,
    /// It dialled us: it authenticated as a client.
    Client,
}

/// Verifies a peer's chain against the cluster root at the current time,
/// as the handshake did.
pub(crate) struct ChainCheck {
    root: CertificateDer<'static>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

impl ChainCheck {
    pub(crate) fn new(
        root: CertificateDer<'static>,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        Self { root, algorithms }
    }

    /// Whether the connection's peer certificate still chains to the root
    /// and is within its validity period now. A connection without a
    /// readable chain fails: it should not exist.
    pub(crate) fn still_valid(&self, connection: &Connection, role: PeerRole) -> bool {
        let Some(chain) = peer_chain(connection) else {
            return false;
        };
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let (Ok(leaf), Ok(anchor)) = (
            webpki::EndEntityCert::try_from(leaf),
            webpki::anchor_from_trusted_cert(&self.root),
        ) else {
            return false;
        };
        let usage = match role {
            PeerRole::Server => webpki::KeyUsage::server_auth(),
            PeerRole::Client => webpki::KeyUsage::client_auth(),
        };
        leaf.verify_for_usage(
            self.algorithms,
            &[anchor],
            intermediates,
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .is_ok()
    }
}

/// The certificate chain the peer presented in the handshake, leaf first.
pub(crate) fn peer_chain(connection: &Connection) -> Option<Vec<CertificateDer<'static>>> {
    let chain: Box<Vec<CertificateDer<'static>>> = connection.peer_identity()?.downcast().ok()?;
    Some(*chain)
}
