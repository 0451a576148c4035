//! The agent's broadcast envelope: the origin's wall-clock send time in
//! front of the application's payload, so every receiver can measure how
//! long the broadcast took to reach it.
//!
//! The core never reads a clock; this is the agent's doing. An envelope is
//! 12 bytes: the 4-byte [`MAGIC`], then the send time as big-endian
//! microseconds since the Unix epoch. A payload without the magic (sent by
//! a program that does not wrap) is delivered as it came, with no delay
//! measured. The delay is only as good as the two hosts' clock agreement
//! (NTP keeps it within a few milliseconds on a LAN); a negative one, from
//! a receiver whose clock is behind, is reported as zero.

use std::time::{SystemTime, UNIX_EPOCH};

/// First bytes of an envelope.
pub const MAGIC: [u8; 4] = [0xE7, b'g', b't', 0x01];
/// Bytes an envelope adds to a payload.
pub const OVERHEAD: usize = MAGIC.len() + 8;

/// The wall clock in microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `payload` in an envelope stamped `sent_micros`.
pub fn wrap(payload: &[u8], sent_micros: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&sent_micros.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The send time and the application's payload of `bytes`; no time when
/// they carry no envelope.
pub fn unwrap(bytes: &[u8]) -> (Option<u64>, &[u8]) {
    match bytes.strip_prefix(&MAGIC[..]) {
        Some(rest) if rest.len() >= 8 => {
            let (time, payload) = rest.split_at(8);
            let time = u64::from_be_bytes(time.try_into().expect("eight bytes"));
            (Some(time), payload)
        }
        _ => (None, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_payloads_come_back_with_their_time() {
        let wrapped = wrap(b"hello", 1_234_567);
        assert_eq!(wrapped.len(), 5 + OVERHEAD);
        assert_eq!(unwrap(&wrapped), (Some(1_234_567), &b"hello"[..]));
        assert_eq!(unwrap(&wrap(b"", 7)), (Some(7), &b""[..]));
        // Foreign payloads pass through untouched.
        assert_eq!(unwrap(b"plain"), (None, &b"plain"[..]));
        assert_eq!(unwrap(&MAGIC), (None, &MAGIC[..]));
    }
}
