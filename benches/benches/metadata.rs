//! Directory and manifest encoding: a directory of 1,000 files serialised
//! and parsed (as every backup and restore does per directory), and a
//! manifest serialised and sealed in its encrypted envelope, and back.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use backup_benches::data::Generator;
use backup_core::internals::crypto::MasterKey;
use backup_core::internals::envelope::{self, ObjectKind};
use backup_core::internals::manifest::MANIFEST_VERSION;
use backup_core::internals::tree::{self, Node, NodeKind};
use backup_core::Id;
use backup_core::{BackupStats, BackupStatus, Manifest, SourceInfo};
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const NODES: usize = 1000;

fn directory(generator: &mut Generator) -> Vec<Node> {
    (0..NODES)
        .map(|n| {
            let size = generator.below(64 << 20);
            let chunks = (size >> 20) + 1;
            Node {
                name: format!("file-{n:05}.dat"),
                kind: NodeKind::File,
                mode: 0o644,
                mtime_ns: 1_700_000_000_000_000_000 + generator.below(1 << 40) as i64,
                size,
                uid: Some(1000),
                gid: Some(1000),
                inode: Some(generator.below(1 << 32)),
                ctime_ns: Some(1_700_000_000_000_000_000 + generator.below(1 << 40) as i64),
                content: (0..chunks)
                    .map(|_| {
                        let mut bytes = [0u8; 32];
                        generator.fill(&mut bytes);
                        Id(bytes)
                    })
                    .collect(),
                subtree: None,
                target: None,
                links: None,
                dev: None,
                xattrs: Vec::new(),
            }
        })
        .collect()
}

fn manifest() -> Manifest {
    let time = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    Manifest {
        version: MANIFEST_VERSION,
        set: "web".into(),
        time,
        started: time,
        finished: time,
        writer: "bench-host".into(),
        hostname: "bench-host".into(),
        source: SourceInfo {
            kind: "directory".into(),
            paths: vec!["/srv/www".into(), "/etc/nginx".into()],
        },
        tags: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        root: vec![Id::digest(b"root")],
        parent: Some(Id::digest(b"parent")),
        facts: BTreeMap::new(),
        stats: BackupStats {
            files: 123_456,
            bytes_total: 2 << 30,
            ..Default::default()
        },
        status: BackupStatus::Completed,
        errors: Vec::new(),
    }
}

fn trees(c: &mut Criterion) {
    let mut nodes = directory(&mut Generator::new(7));
    let Ok(encoded) = tree::encode(&mut nodes) else {
        panic!("a directory with distinct names encodes");
    };
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("encode_1000_nodes", |b| {
        b.iter(|| tree::encode(black_box(&mut nodes)).map(|bytes| bytes.len()));
    });
    group.bench_function("decode_1000_nodes", |b| {
        b.iter(|| tree::decode("bench", black_box(&encoded)).map(|nodes| nodes.len()));
    });
    group.finish();
}

fn manifests(c: &mut Criterion) {
    let key = MasterKey::generate();
    let manifest = manifest();
    let seal = |manifest: &Manifest| {
        serde_json::to_vec(manifest)
            .map(|json| envelope::seal(ObjectKind::Manifest, &json, true, Some(&key)))
    };
    let Ok(sealed) = seal(&manifest) else {
        panic!("a manifest serialises");
    };
    let mut group = c.benchmark_group("manifest");
    group.bench_function("seal", |b| b.iter(|| seal(black_box(&manifest))));
    group.bench_function("open", |b| {
        b.iter(|| {
            envelope::open(
                "bench",
                black_box(&sealed),
                ObjectKind::Manifest,
                Some(&key),
            )
            .ok()
            .and_then(|json| serde_json::from_slice::<Manifest>(&json).ok())
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = trees, manifests
}
criterion_main!(benches);
