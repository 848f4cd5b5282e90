//! The inline vectors of FORMAT.md ("Test vectors"), checked against the
//! encoders and decoders, so that the document and the code cannot drift.
//!
//! Each vector is a fenced block whose first line is `vector: NAME`,
//! followed by `field: value` lines; a value continued on indented lines is
//! hex split for width.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::config::{KeyFile, RepoConfig};
use super::envelope::{self, ObjectKind};
use super::index::IndexFile;
use super::pack::BlobKind;
use super::tree::{self, NodeKind};
use crate::crypto::{self, MasterKey};
use crate::Id;

const FORMAT_MD: &str = include_str!("../../../FORMAT.md");

/// Every vector of FORMAT.md by name, each field's value as written
/// (continuation lines joined).
fn vectors() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut vectors = BTreeMap::new();
    for block in FORMAT_MD.split("```text\n").skip(1) {
        let body = &block[..block.find("```").expect("unclosed block in FORMAT.md")];
        let mut lines = body.lines();
        let Some(name) = lines.next().and_then(|line| line.strip_prefix("vector: ")) else {
            continue;
        };
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last = None;
        for line in lines {
            if let Some(more) = line.strip_prefix("  ") {
                let field: &String = last.as_ref().expect("continuation without a field");
                fields
                    .get_mut(field)
                    .expect("field of the continuation")
                    .push_str(more.trim());
            } else {
                let (field, value) = line.split_once(": ").expect("a `field: value` line");
                fields.insert(field.to_owned(), value.trim().to_owned());
                last = Some(field.to_owned());
            }
        }
        assert!(
            vectors.insert(name.to_owned(), fields).is_none(),
            "vector {name} twice"
        );
    }
    vectors
}

fn hex_field(vector: &BTreeMap<String, String>, field: &str) -> Vec<u8> {
    hex::decode(
        vector
            .get(field)
            .unwrap_or_else(|| panic!("no field {field}")),
    )
    .unwrap_or_else(|error| panic!("{field} is not hex: {error}"))
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("length of the vector field")
}

fn vector_master_key(all: &BTreeMap<String, BTreeMap<String, String>>) -> MasterKey {
    let vector = &all["master-key"];
    let bytes = hex_field(vector, "master-key");
    let mut parts = hex_field(vector, "encryption-key");
    parts.extend(hex_field(vector, "id-key"));
    parts.extend(hex_field(vector, "chunker-seed"));
    assert_eq!(parts, bytes, "the master key is its three parts in order");
    let master = MasterKey::from_bytes(&bytes).expect("72 bytes");
    assert_eq!(
        master.chunker_seed() & 1,
        1,
        "writers set the seed's lowest bit"
    );
    assert_eq!(&master.to_bytes()[..], &bytes[..]);
    master
}

fn encryption_key(all: &BTreeMap<String, BTreeMap<String, String>>) -> [u8; 32] {
    array(&hex_field(&all["master-key"], "encryption-key"))
}

#[test]
fn format_md_has_every_inline_vector() {
    let names: Vec<String> = vectors().into_keys().collect();
    assert_eq!(
        names,
        ["hchacha20", "index", "key-file", "master-key", "tree"]
    );
}

#[test]
fn hchacha20_vector() {
    let vector = &vectors()["hchacha20"];
    let key: [u8; 32] = array(&hex_field(vector, "key"));
    let nonce: [u8; 16] = array(&hex_field(vector, "nonce"));
    let subkey = chacha20::hchacha::<chacha20::cipher::consts::U10>(&key.into(), &nonce.into());
    assert_eq!(subkey.as_slice(), &hex_field(vector, "subkey")[..]);
}

#[test]
fn tree_vector() {
    let all = vectors();
    let master = vector_master_key(&all);
    let vector = &all["tree"];
    let listing = hex_field(vector, "listing");
    let mut nodes = tree::decode("vector", &listing).unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].kind, NodeKind::File);
    assert_eq!(nodes[0].content, [Id::digest(b"hello")]);
    assert_eq!(nodes[1].target.as_deref(), Some("a.txt"));
    assert_eq!(
        tree::encode(&mut nodes).unwrap(),
        listing,
        "writers encode it so"
    );

    let sha256_id = Id::digest(&listing);
    assert_eq!(sha256_id.as_bytes(), &hex_field(vector, "sha256-id")[..]);
    let keyed_id = master.chunk_id(&listing);
    assert_eq!(keyed_id.as_bytes(), &hex_field(vector, "keyed-id")[..]);

    let nonce: [u8; 24] = array(&hex_field(vector, "blob-nonce"));
    let mut associated = keyed_id.as_bytes().to_vec();
    associated.push(BlobKind::Tree as u8);
    let blob = hex_field(vector, "encrypted-blob");
    assert_eq!(
        crypto::seal_with_nonce(&encryption_key(&all), &nonce, &listing, &associated),
        blob
    );
    assert_eq!(master.open(&blob, &associated).unwrap(), listing);
}

#[test]
fn index_vector() {
    let all = vectors();
    let master = vector_master_key(&all);
    let vector = &all["index"];
    let payload = hex_field(vector, "payload");
    let file = IndexFile::decode("vector", &payload).unwrap();
    assert_eq!(file.supersedes, [Id([0xaa; 32])]);
    assert_eq!(file.packs.len(), 1);
    let pack = &file.packs[0];
    assert_eq!(
        (pack.id, pack.size, pack.blobs.len()),
        (Id([0xbb; 32]), 4096, 1)
    );
    let tree = &all["tree"];
    let blob = pack.blobs[0];
    assert_eq!(blob.kind, BlobKind::Tree);
    assert_eq!((blob.flags, blob.offset), (0, 0));
    assert_eq!(
        blob.stored_length as usize,
        hex_field(tree, "encrypted-blob").len()
    );
    assert_eq!(blob.raw_length as usize, hex_field(tree, "listing").len());
    assert_eq!(blob.id.as_bytes(), &hex_field(tree, "keyed-id")[..]);
    assert_eq!(file.encode(), payload, "writers encode it so");

    let plain = hex_field(vector, "plain-object");
    assert_eq!(
        envelope::seal(ObjectKind::Index, &payload, false, None),
        plain
    );
    assert_eq!(
        envelope::open("vector", &plain, ObjectKind::Index, None).unwrap(),
        payload
    );
    assert_eq!(
        Sha256::digest(&plain).as_slice(),
        &hex_field(vector, "plain-name")[..]
    );

    let encrypted = hex_field(vector, "encrypted-object");
    assert_eq!(
        envelope::open("vector", &encrypted, ObjectKind::Index, Some(&master)).unwrap(),
        payload
    );
    let header = &encrypted[..envelope::ENVELOPE_HEADER_LEN];
    assert_eq!(header, [0x42, 0x4b, 0x55, 0x50, 1, 3, 2, 0]);
    let nonce: [u8; 24] = array(&hex_field(vector, "envelope-nonce"));
    let mut expected = header.to_vec();
    expected.extend(crypto::seal_with_nonce(
        &encryption_key(&all),
        &nonce,
        &payload,
        header,
    ));
    let checksum = Sha256::digest(&expected);
    expected.extend_from_slice(&checksum);
    assert_eq!(expected, encrypted);
}

#[test]
fn key_file_vector() {
    let all = vectors();
    let master = vector_master_key(&all);
    let vector = &all["key-file"];
    let password = hex_field(vector, "password");
    assert_eq!(password, b"correct horse battery staple");
    let config_object = hex_field(vector, "config-object");
    let config = RepoConfig::from_object(&config_object).unwrap();
    assert_eq!(
        config.encryption.as_deref(),
        Some("xchacha20poly1305-argon2id")
    );
    assert_eq!(
        config.to_object().unwrap(),
        config_object,
        "writers encode it so"
    );

    let object = hex_field(vector, "key-object");
    assert_eq!(
        Sha256::digest(&object).as_slice(),
        &hex_field(vector, "key-name")[..]
    );
    let key_file = KeyFile::from_object("vector", &object).unwrap();
    assert_eq!(
        key_file.to_object().unwrap(),
        object,
        "writers encode it so"
    );
    let salt = hex::decode(&key_file.salt).unwrap();
    let kek = key_file.params.derive(&password, &salt).unwrap();
    assert_eq!(&kek[..], &hex_field(vector, "kek")[..]);
    let opened = key_file
        .open("vector", &password, &config_object)
        .unwrap()
        .expect("the password opens the key file");
    assert_eq!(&opened.to_bytes()[..], &master.to_bytes()[..]);
    assert!(key_file
        .open("vector", b"wrong", &config_object)
        .unwrap()
        .is_none());

    let nonce: [u8; 24] = array(&hex_field(vector, "key-nonce"));
    let mut secret = master.to_bytes().to_vec();
    secret.extend_from_slice(&Sha256::digest(&config_object));
    assert_eq!(
        hex::encode(crypto::seal_with_nonce(
            &kek,
            &nonce,
            &secret,
            b"backup-toolkit key v1"
        )),
        key_file.data
    );
}

#[test]
fn integers_written_with_a_fraction_or_exponent_are_damage() {
    let node = |mode: &str| {
        format!(r#"{{"name":"a","type":"file","mode":{mode},"mtime_ns":0}}"#).into_bytes()
    };
    assert!(tree::decode("vector", &node("420")).is_ok());
    for not_an_integer in ["420.0", "4.2e2", "42e1", "true", "\"420\"", "-1", "null"] {
        assert!(
            tree::decode("vector", &node(not_an_integer)).is_err(),
            "mode {not_an_integer} was accepted"
        );
    }
    let all = vectors();
    let object = hex_field(&all["key-file"], "key-object");
    let json = String::from_utf8(envelope::open("vector", &object, ObjectKind::Key, None).unwrap())
        .unwrap();
    for (from, to) in [
        ("\"memory_kib\": 8", "\"memory_kib\": 8.0"),
        ("\"iterations\": 1", "\"iterations\": 1e0"),
    ] {
        assert!(json.contains(from));
        let changed = envelope::seal(
            ObjectKind::Key,
            json.replace(from, to).as_bytes(),
            false,
            None,
        );
        assert!(
            KeyFile::from_object("vector", &changed).is_err(),
            "{to} was accepted"
        );
    }
}

#[test]
fn timestamps_are_instants_and_fractions_beyond_nine_digits_are_cut() {
    use chrono::{DateTime, Utc};
    let parse = |text: &str| serde_json::from_str::<DateTime<Utc>>(&format!("\"{text}\"")).unwrap();
    assert_eq!(
        parse("2026-01-01T01:00:00+01:00"),
        parse("2026-01-01T00:00:00Z")
    );
    assert!(parse("2026-01-01T00:00:00.5Z") > parse("2026-01-01T00:00:00Z"));
    assert_eq!(
        parse("2026-01-01T00:00:00.123456789999Z"),
        parse("2026-01-01T00:00:00.123456789Z"),
        "truncated, not rounded"
    );
    assert!(parse("2026-01-01T00:00:00.000000001Z") > parse("2026-01-01T00:00:00Z"));
}

#[test]
fn a_manifest_error_without_a_kind_or_with_an_unknown_one_reads_as_other() {
    use crate::{FailureKind, ItemFailure};
    let read = |json: &str| serde_json::from_str::<ItemFailure>(json).unwrap();
    assert_eq!(
        read(r#"{"path":"/srv/a","message":"gone"}"#).kind,
        FailureKind::Other
    );
    assert_eq!(
        read(r#"{"path":"/srv/a","kind":"permission_denied","message":"no"}"#).kind,
        FailureKind::PermissionDenied
    );
    assert_eq!(
        read(r#"{"path":"/srv/a","kind":"a_kind_of_a_later_version","message":"?"}"#).kind,
        FailureKind::Other
    );
    let written = serde_json::to_string(&ItemFailure::new(
        "/srv/a",
        FailureKind::Unsupported,
        "odd name",
    ))
    .unwrap();
    assert_eq!(
        written,
        r#"{"path":"/srv/a","kind":"unsupported","message":"odd name"}"#
    );
}
