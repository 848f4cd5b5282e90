//! `envelope::open` on arbitrary bytes, for every object kind, without a key
//! and with a master key; plus the seal → open round trip.
//!
//! Checked: no panic, no unbounded allocation (the decompressed payload is
//! capped at 512 MiB by `open`); an envelope sealed by `seal` opens to the
//! same payload, and only as the kind it was sealed as.

#![no_main]

use backup_core::internals::envelope;
use backup_fuzz::{fix_envelope_checksum, test_key, ALL_KINDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = test_key();
    let fixed = fix_envelope_checksum(data);
    for kind in ALL_KINDS {
        for bytes in [data, &fixed[..]] {
            let plain = envelope::open("fuzz/object", bytes, kind, None);
            let keyed = envelope::open("fuzz/object", bytes, kind, Some(key));
            // Without the encrypted flag a payload never depends on the key
            // (config and key files are read the same way with or without).
            if let (Ok(plain), Ok(keyed)) = (&plain, &keyed) {
                assert_eq!(plain, keyed, "{kind:?}: same object, two payloads");
            }
        }
    }

    // Round trip: any payload, sealed as any kind, compressed or not, with
    // or without the key, opens to itself, and not as another kind.
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let kind = ALL_KINDS[usize::from(selector % 7)];
    let compress = selector & 0x10 != 0;
    let with_key = (selector & 0x20 != 0).then_some(key);
    let sealed = envelope::seal(kind, payload, compress, with_key);
    match envelope::open("fuzz/sealed", &sealed, kind, with_key) {
        Ok(opened) => assert!(
            opened == payload,
            "{kind:?}: round trip changed the payload"
        ),
        Err(error) => panic!("{kind:?}: a sealed envelope does not open: {error}"),
    }
    let other = ALL_KINDS[usize::from(selector % 7 + 1) % 7];
    assert!(
        envelope::open("fuzz/sealed", &sealed, other, with_key).is_err(),
        "{kind:?} opened as {other:?}"
    );
});
