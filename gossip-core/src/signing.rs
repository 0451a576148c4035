//! The seam for rumor origin signatures.
//!
//! The core carries no cryptography. An application that needs to know who
//! said what installs a [`RumorSigner`] on each node with
//! [`Node::set_rumor_signer`](crate::Node::set_rumor_signer): the node then
//! signs every rumor it originates, sends its rumors with their origin's
//! signature, and refuses (counting them in
//! [`Stats::rumors_refused_signature`](crate::Stats::rumors_refused_signature))
//! rumors whose signature is missing or does not verify for the origin
//! they name. Such rumors are never delivered, stored or relayed.
//! `gossip-seal` provides an Ed25519 implementation.
//!
//! Without a signer, rumors travel without signatures and cost no extra
//! byte on the wire.

use crate::id::MessageId;

/// Longest signature a [`RumorSigner`] may produce, in bytes (Ed25519's
/// take 64). Longer signatures in a frame make it malformed.
pub const MAX_SIGNATURE_LEN: usize = 128;

/// Signs the rumors this node originates and verifies other origins'.
///
/// Both must be deterministic functions of their arguments and the
/// signer's keys (Ed25519 is), so that a node replays exactly. They are
/// called with untrusted input and must not panic.
pub trait RumorSigner: Send {
    /// Length in bytes of every signature [`sign`](Self::sign) returns,
    /// from 1 to [`MAX_SIGNATURE_LEN`].
    fn signature_len(&self) -> usize;

    /// This node's signature over the rumor `id` (whose origin is this
    /// node) carrying `payload`. Sign [`signed_bytes`]`(id, payload)`.
    fn sign(&self, id: MessageId, payload: &[u8]) -> Vec<u8>;

    /// Whether `signature` is `id.origin`'s over `id` and `payload`. An
    /// origin whose key is unknown has no valid signature.
    fn verify(&self, id: MessageId, payload: &[u8], signature: &[u8]) -> bool;
}

/// Domain separation tag at the start of every signed message.
const SIGNING_CONTEXT: &[u8] = b"gossip rumor v1\0";

/// The bytes a rumor's signature covers: a fixed context string, the
/// rumor's id in its wire encoding (origin, generation, sequence) and the
/// payload. The hop count is not covered: relays change it.
pub fn signed_bytes(id: MessageId, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_CONTEXT.len() + 40 + payload.len());
    out.extend_from_slice(SIGNING_CONTEXT);
    let mut out = postcard::to_extend(&id, out).expect("encoding into a Vec cannot fail");
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;

    #[test]
    fn signed_bytes_bind_every_part_of_the_id_and_the_payload() {
        let id = MessageId {
            origin: NodeId::new("127.0.0.1:7946".parse().unwrap()),
            generation: 3,
            sequence: 9,
        };
        let base = signed_bytes(id, b"abc");
        assert!(base.starts_with(SIGNING_CONTEXT));
        let variants = [
            signed_bytes(
                MessageId {
                    origin: NodeId::new("127.0.0.2:7946".parse().unwrap()),
                    ..id
                },
                b"abc",
            ),
            signed_bytes(
                MessageId {
                    generation: 4,
                    ..id
                },
                b"abc",
            ),
            signed_bytes(MessageId { sequence: 10, ..id }, b"abc"),
            signed_bytes(id, b"abd"),
            signed_bytes(id, b"ab"),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
    }
}
