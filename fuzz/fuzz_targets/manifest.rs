//! The JSON objects of the format read with serde_json: `Manifest`,
//! `DeletionMark` (prune) and `InflightMarker`. An input starting with the
//! envelope magic is also opened (checksum repaired) as a manifest, deletion
//! mark and in-flight marker object first, as a reader does; only when not
//! compressed (see the `index` target for why).
//!
//! Checked: no panic; whatever decodes serializes to JSON that decodes to an
//! equal value (floats in `facts` compared to within rounding: serde_json
//! does not parse floats exactly without its `float_roundtrip` feature).

#![no_main]

use backup_core::internals::envelope;
use backup_core::internals::ObjectKind;
use backup_core::internals::inflight::InflightMarker;
use backup_core::internals::marks::DeletionMark;
use backup_core::Manifest;
use backup_fuzz::fix_envelope_checksum;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn round_trip<T: Serialize + DeserializeOwned>(what: &str, value: &T) -> T {
    let json = match serde_json::to_vec(value) {
        Ok(json) => json,
        Err(error) => panic!("a decoded {what} does not encode: {error}"),
    };
    match serde_json::from_slice(&json) {
        Ok(again) => again,
        Err(error) => panic!(
            "a re-encoded {what} does not decode: {error}\n{}",
            String::from_utf8_lossy(&json)
        ),
    }
}

/// Equal JSON values, floats equal to within a few units in the last place.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs(),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

fn check(json: &[u8]) {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(json) {
        let mut again = round_trip("manifest", &manifest);
        let facts = std::mem::take(&mut again.facts);
        let mut expected = manifest.clone();
        let expected_facts = std::mem::take(&mut expected.facts);
        assert_eq!(again, expected, "manifest changed in a JSON round trip");
        assert!(
            facts.len() == expected_facts.len()
                && facts
                    .iter()
                    .zip(&expected_facts)
                    .all(|((k, v), (ek, ev))| k == ek && same_json(v, ev)),
            "manifest facts changed in a JSON round trip"
        );
    }
    if let Ok(mark) = serde_json::from_slice::<DeletionMark>(json) {
        assert_eq!(round_trip("deletion mark", &mark), mark);
    }
    if let Ok(marker) = serde_json::from_slice::<InflightMarker>(json) {
        assert_eq!(round_trip("in-flight marker", &marker), marker);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.starts_with(&backup_core::internals::MAGIC) && !backup_fuzz::compressed_envelope(data) {
        let fixed = fix_envelope_checksum(data);
        for kind in [
            ObjectKind::Manifest,
            ObjectKind::DeletionMark,
            ObjectKind::Inflight,
        ] {
            if let Ok(payload) = envelope::open("manifests/fuzz", &fixed, kind, None) {
                check(&payload);
            }
        }
    }
});
