//! Writes the seed inputs of the fuzz targets into `seeds/<target>/`: real
//! objects of the golden repositories (`backup-core/tests/golden`), their
//! decoded payloads, small objects made by backup-core, and hand-made edge
//! cases. Run from `fuzz/`: `cargo run --manifest-path seedgen/Cargo.toml`.

use std::path::{Path, PathBuf};

use backup_core::internals::config::{KeyFile, RepoConfig};
use backup_core::internals::crypto::MasterKey;
use backup_core::internals::envelope;
use backup_core::internals::ObjectKind;
use backup_core::internals::index::{IndexFile, IndexedPack};
use backup_core::internals::pack::{self, BlobKind, PackBuilder};
use backup_core::{Id, KdfParams};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

fn only_file(dir: &Path) -> Result<Vec<u8>> {
    let mut entries = std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    let first = entries.first().ok_or("empty directory")?;
    Ok(std::fs::read(first.path())?)
}

/// The packs of a golden repository, smallest first.
fn packs(repo: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo.join("data"))? {
        for file in std::fs::read_dir(sub?.path())? {
            out.push(std::fs::read(file?.path())?);
        }
    }
    out.sort_by_key(Vec::len);
    Ok(out)
}

/// An envelope with a version byte other than 1 and a valid checksum.
fn with_version(object: &[u8], version: u8) -> Vec<u8> {
    let mut body = object[..object.len() - 32].to_vec();
    body[4] = version;
    envelope_checksum(body)
}

/// `body` followed by its SHA-256, as the envelope's trailing checksum.
fn envelope_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let digest = sha256(&body);
    body.extend_from_slice(&digest);
    body
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Id::digest(bytes).0
}

fn main() -> Result<()> {
    let fuzz = std::env::current_dir()?;
    let golden = fuzz.join("../backup-core/tests/golden");
    let plain = golden.join("v1-plain");
    let encrypted = golden.join("v1-encrypted");
    let seeds = Seeds {
        root: fuzz.join("seeds"),
    };

    let plain_config = std::fs::read(plain.join("config"))?;
    let enc_config = std::fs::read(encrypted.join("config"))?;
    let enc_key = only_file(&encrypted.join("keys"))?;
    let plain_index = only_file(&plain.join("index"))?;
    let enc_index = only_file(&encrypted.join("index"))?;
    let plain_manifest = only_file(&plain.join("manifests"))?;
    let enc_manifest = only_file(&encrypted.join("manifests"))?;
    let plain_packs = packs(&plain)?;
    let enc_packs = packs(&encrypted)?;
    let plain_tree_pack = plain_packs.first().ok_or("no pack")?;
    let enc_tree_pack = enc_packs.first().ok_or("no pack")?;

    // --- envelope: every kind of real object, plus edge cases.
    let pack_header_envelope = {
        let len = plain_tree_pack.len();
        let header_length =
            u32::from_le_bytes(plain_tree_pack[len - 8..len - 4].try_into()?) as usize;
        plain_tree_pack[len - 8 - header_length..len - 8].to_vec()
    };
    for (name, bytes) in [
        ("golden-plain-config", &plain_config),
        ("golden-plain-index", &plain_index),
        ("golden-plain-manifest", &plain_manifest),
        ("golden-plain-pack-header", &pack_header_envelope),
        ("golden-encrypted-config", &enc_config),
        ("golden-encrypted-key", &enc_key),
        ("golden-encrypted-index", &enc_index),
        ("golden-encrypted-manifest", &enc_manifest),
    ] {
        seeds.put("envelope", name, bytes)?;
    }
    let compressible = b"{\"set\":\"golden\",\"set\":\"golden\",\"set\":\"golden\"}".repeat(8);
    for (name, kind) in [
        ("empty-config", ObjectKind::Config),
        ("empty-deletion-mark", ObjectKind::DeletionMark),
        ("empty-inflight", ObjectKind::Inflight),
    ] {
        seeds.put("envelope", name, &envelope::seal(kind, b"", false, None))?;
    }
    seeds.put(
        "envelope",
        "compressed-manifest",
        &envelope::seal(ObjectKind::Manifest, &compressible, true, None),
    )?;
    seeds.put("envelope", "version-2", &with_version(&plain_config, 2))?;
    seeds.put("envelope", "too-short", b"BKUP\x01\x01\x00\x00")?;

    // --- config_and_key: configs and key files, real and made.
    seeds.put("config_and_key", "golden-plain-config", &plain_config)?;
    seeds.put("config_and_key", "golden-encrypted-config", &enc_config)?;
    seeds.put("config_and_key", "golden-encrypted-key", &enc_key)?;
    seeds.put(
        "config_and_key",
        "config-version-2",
        &with_version(&plain_config, 2),
    )?;
    let mut config: RepoConfig = RepoConfig::from_object(&plain_config)?;
    config.version = 2;
    seeds.put(
        "config_and_key",
        "config-json-version-2",
        &config.to_object()?,
    )?;
    config.version = 1;
    config.chunker.min_size = 1;
    seeds.put("config_and_key", "config-bad-chunker", &config.to_object()?)?;
    // Small Argon2 parameters, password "fuzz-password" (the target's), so
    // the target derives the key and opens it; the config digest then fails
    // (the target passes the key file itself as the config object).
    let master = MasterKey::generate();
    let cheap_key = KeyFile::create(
        &master,
        b"fuzz-password",
        KdfParams::insecure_for_tests(),
        &plain_config,
        "seedgen".into(),
    )?;
    seeds.put(
        "config_and_key",
        "key-cheap-params",
        &cheap_key.to_object()?,
    )?;
    let mut costly = cheap_key.clone();
    costly.params.memory_kib = 4 * 1024 * 1024 + 1;
    seeds.put(
        "config_and_key",
        "key-params-out-of-range",
        &costly.to_object()?,
    )?;

    // --- pack_header: the golden tree packs and small packs made here.
    seeds.put("pack_header", "golden-plain-tree-pack", plain_tree_pack)?;
    seeds.put("pack_header", "golden-encrypted-tree-pack", enc_tree_pack)?;
    let (_, empty_pack, _) = PackBuilder::default().finish(None);
    seeds.put("pack_header", "empty-pack", &empty_pack)?;
    let mut builder = PackBuilder::default();
    let chunks: [&[u8]; 3] = [b"raw chunk", &[b'z'; 300], b""];
    for chunk in chunks {
        let id = Id::digest(chunk);
        let (stored, flags) = pack::encode_blob(&id, BlobKind::Data, chunk, None, 3);
        builder.add(id, BlobKind::Data, flags, chunk.len() as u32, &stored);
    }
    let (_, small_pack, _) = builder.finish(None);
    seeds.put("pack_header", "three-blobs", &small_pack)?;
    seeds.put("pack_header", "trailer-only", b"\x00\x00\x00\x00BKPK")?;

    // --- blob: structured input (arbitrary); a few shapes of bytes.
    seeds.put("blob", "zeros", &[0u8; 64])?;
    let mut compressed_blob = vec![0u8; 8];
    compressed_blob
        .extend(pack::encode_blob(&Id([0; 32]), BlobKind::Data, &[b'z'; 300], None, 3).0);
    seeds.put("blob", "zstd-frame", &compressed_blob)?;
    seeds.put("blob", "ones", &[0xffu8; 96])?;

    // --- index: golden objects and payloads, made payloads, hostile counts.
    let plain_index_payload = envelope::open("index", &plain_index, ObjectKind::Index, None)?;
    seeds.put("index", "golden-plain-index-object", &plain_index)?;
    seeds.put("index", "golden-plain-index-payload", &plain_index_payload)?;
    seeds.put("index", "empty", &IndexFile::default().encode())?;
    let made = IndexFile {
        supersedes: vec![Id::digest(b"old"), Id::digest(b"random")],
        packs: vec![
            IndexedPack {
                id: Id::digest(b"empty pack"),
                size: 48,
                blobs: vec![],
            },
            IndexedPack {
                id: Id::digest(b"pack"),
                size: 1000,
                blobs: pack::read_header("p", &small_pack, None)?,
            },
        ],
    };
    let made_bytes = made.encode();
    seeds.put("index", "two-packs", &made_bytes)?;
    let mut hostile = made_bytes.clone();
    hostile[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    seeds.put("index", "hostile-supersedes-count", &hostile)?;

    // --- tree: every listing of the golden plain repository.
    let header = pack::read_header("p", plain_tree_pack, None)?;
    let mut listing = Vec::new();
    for entry in &header {
        let start = entry.offset as usize;
        let stored = &plain_tree_pack[start..start + entry.stored_length as usize];
        let chunk = pack::decode_blob("p", entry, stored, None)?;
        if entry.kind == BlobKind::Tree {
            listing.push(chunk);
        }
    }
    for (number, chunk) in listing.iter().enumerate() {
        seeds.put("tree", &format!("golden-listing-{number}"), chunk)?;
    }
    let id = Id::digest(b"x").to_hex();
    let edge = format!(
        concat!(
            "{{\"name\":\"a\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":-1,\"size\":3,\"content\":[\"{id}\"],\"uid\":null}}\n",
            "\n",
            "{{\"name\":\"b\\u00e9\\n\",\"type\":\"dir\",\"mode\":4095,\"mtime_ns\":9223372036854775807,\"subtree\":[],\"target\":null,\"unknown\":{{}}}}\n",
            "{{\"name\":\"\u{65e5}\",\"type\":\"symlink\",\"mode\":511,\"mtime_ns\":0,\"target\":\"../../etc\"}}\n"
        ),
        id = id
    );
    seeds.put("tree", "edge-cases", edge.as_bytes())?;
    seeds.put(
        "tree",
        "dot-dot",
        b"{\"name\":\"..\",\"type\":\"dir\",\"mode\":493,\"mtime_ns\":0,\"subtree\":[]}\n",
    )?;

    // --- manifest: golden JSON, its object, the other JSON objects.
    let manifest_json = envelope::open("m", &plain_manifest, ObjectKind::Manifest, None)?;
    seeds.put("manifest", "golden-plain-manifest-json", &manifest_json)?;
    seeds.put("manifest", "golden-plain-manifest-object", &plain_manifest)?;
    let mut value: serde_json::Value = serde_json::from_slice(&manifest_json)?;
    value["time"] = "2026-01-01T23:59:59.999999999-23:59".into();
    value["facts"] = serde_json::json!({"lsn": 1.5e300, "revision": 18446744073709551615u64, "nested": [null, true, "x"]});
    value["errors"] = serde_json::json!([{"path": "/a", "message": "m"}]);
    value["status"] = "partially_failed".into();
    seeds.put("manifest", "edge-cases", &serde_json::to_vec(&value)?)?;
    seeds.put(
        "manifest",
        "deletion-mark",
        format!("{{\"marked_at\":\"2026-01-01T00:00:00Z\",\"packs\":[\"{id}\"]}}").as_bytes(),
    )?;
    seeds.put(
        "manifest",
        "inflight-marker",
        b"{\"started\":\"2026-01-01T00:00:00Z\",\"heartbeat\":\"2026-01-01T00:01:00.5+01:00\",\"writer\":\"w\",\"hostname\":\"h\",\"pid\":4294967295}",
    )?;

    // --- roundtrip: structured input (arbitrary); a few shapes of bytes.
    seeds.put("roundtrip", "zeros", &[0u8; 64])?;
    seeds.put(
        "roundtrip",
        "text",
        b"file one\x00\x01\x02 contents and a name\xff\x10\x20 dir/sub",
    )?;
    let pattern: Vec<u8> = (0..=255u8).cycle().take(512).collect();
    seeds.put("roundtrip", "counting", &pattern)?;

    println!("seeds written to {}", seeds.root.display());
    Ok(())
}
