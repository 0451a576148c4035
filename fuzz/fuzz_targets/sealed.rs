//! `Keyring::open` on hostile input: random keys, labels and frames are
//! sealed, then tampered at fuzzer-chosen bytes (nonce, key id, tag,
//! ciphertext, length) or replaced by arbitrary bytes that name a ring key.
//! Checks: nothing panics; an untouched frame opens to what was sealed; a
//! frame that differs from the sealed one never opens; another label or a
//! ring without the key never opens it.
#![no_main]

use arbitrary::Arbitrary;
use gossip_seal::{Key, Keyring, OpenError, HEADER_LEN, NONCE_LEN, OVERHEAD, SEAL_VERSION};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Tamper {
    /// XOR one byte (index taken modulo the length) with a non-zero mask.
    Flip { at: u16, mask: u8 },
    /// Cut the frame to a length (modulo its length).
    Truncate { len: u16 },
    /// Append bytes.
    Extend { bytes: Vec<u8> },
    /// Replace the nonce.
    Nonce { nonce: [u8; NONCE_LEN] },
}

#[derive(Debug, Arbitrary)]
struct Input {
    keys: Vec<[u8; 32]>,
    primary: u8,
    label: Vec<u8>,
    other_label: Vec<u8>,
    frame: Vec<u8>,
    tampers: Vec<Tamper>,
    /// Arbitrary bytes opened as they are, with a ring key's id written in.
    raw: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Some((first, rest)) = input.keys.split_first() else {
        return;
    };
    let mut ring = Keyring::new(Key::from_bytes(*first));
    for bytes in rest.iter().take(7) {
        let _ = ring.add(Key::from_bytes(*bytes));
    }
    let primary = ring.keys()[input.primary as usize % ring.keys().len()].id();
    ring.set_primary(primary).unwrap();

    let sealed = ring.seal(&input.label, &input.frame).unwrap();
    assert_eq!(ring.open(&input.label, &sealed).unwrap(), input.frame);
    if input.other_label != input.label {
        assert!(ring.open(&input.other_label, &sealed).is_err());
    }
    let mut stranger = Keyring::new(Key::from_bytes([0x5a; 32]));
    if !ring.keys().iter().any(|k| k == stranger.primary()) {
        assert!(stranger.open(&input.label, &sealed).is_err());
    }
    let _ = stranger.add(Key::from_bytes([0xa5; 32]));

    let mut tampered = sealed.clone();
    for tamper in input.tampers.iter().take(8) {
        match tamper {
            Tamper::Flip { at, mask } if !tampered.is_empty() && *mask != 0 => {
                let at = *at as usize % tampered.len();
                tampered[at] ^= mask;
            }
            Tamper::Truncate { len } if !tampered.is_empty() => {
                tampered.truncate(*len as usize % tampered.len());
            }
            Tamper::Extend { bytes } => tampered.extend_from_slice(bytes),
            Tamper::Nonce { nonce } if tampered.len() >= HEADER_LEN => {
                tampered[HEADER_LEN - NONCE_LEN..HEADER_LEN].copy_from_slice(nonce);
            }
            _ => {}
        }
    }
    let opened = ring.open(&input.label, &tampered);
    if tampered == sealed {
        assert_eq!(opened.unwrap(), input.frame);
    } else {
        assert!(opened.is_err(), "a tampered frame opened");
    }

    // Arbitrary bytes that pass the cheap checks and reach the cipher.
    let mut raw = input.raw;
    if raw.len() >= 5 {
        raw[0] = SEAL_VERSION;
        raw[1..1 + gossip_seal::KEY_ID_LEN].copy_from_slice(&ring.primary().id().0);
    }
    let mut buf = raw.clone();
    let result = ring.open_in_place(&input.label, &mut buf);
    // A forgery would need the 128-bit tag guessed; a long enough frame
    // naming the key reaches the cipher and fails there.
    if raw.len() >= OVERHEAD {
        assert!(matches!(result, Err(OpenError::Forged(_))), "{result:?}");
    } else {
        assert!(result.is_err(), "{result:?}");
    }
    assert_eq!(buf, raw, "a failed open changed the buffer");
});
