//! The fixed hashes every node computes alike: a key's place in the digest
//! tree and the digest of an entry. Not keyed: nodes must agree on them.
//! Collisions, even forged ones, cost extra transfer, never correctness
//! (the exchange compares entry digests and ships every key of a hash).

use super::version::Version;

/// FNV-1a over `parts`, then a SplitMix64 finaliser for well-mixed high
/// bits (the tree's buckets come from the top bits).
fn mix(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separates parts, so ("ab", "c") and ("a", "bc") differ.
        h ^= part.len() as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    finish(h)
}

fn finish(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key's 64-bit hash: its place in the digest tree.
pub fn key_hash(key: &[u8]) -> u64 {
    mix(&[b"k", key])
}

/// The digest of one key's state.
pub fn entry_digest(key: &[u8], version: Version, value: Option<&[u8]>) -> u64 {
    let stamp = version.stamp.to_le_bytes();
    let origin = version.origin.to_le_bytes();
    match value {
        Some(v) => mix(&[b"v", key, &stamp, &origin, v]),
        None => mix(&[b"t", key, &stamp, &origin]),
    }
}

/// A node's tag in versions: a hash of its id's text, so every node
/// derives the same tag for the same member.
pub fn node_tag(id: &gossip_core::NodeId) -> u64 {
    mix(&[b"n", id.to_string().as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_separated_and_kinds_differ() {
        assert_ne!(mix(&[b"ab", b"c"]), mix(&[b"a", b"bc"]));
        let v = Version {
            stamp: 1,
            origin: 2,
        };
        assert_ne!(
            entry_digest(b"k", v, Some(b"")),
            entry_digest(b"k", v, None)
        );
        assert_eq!(key_hash(b"x"), key_hash(b"x"));
    }
}
