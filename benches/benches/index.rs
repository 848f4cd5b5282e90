//! The in-memory index: lookups (hit and miss) in an index of a 200 GiB
//! repository (200,000 blobs), loading it, and encoding and decoding an
//! index object.

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data::Generator;
use backup_core::internals::index::{Index, IndexFile, IndexedPack};
use backup_core::internals::pack::{BlobEntry, BlobKind, BLOB_COMPRESSED};
use backup_core::Id;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BLOBS: usize = 200_000;
const BLOBS_PER_PACK: usize = 16;

fn random_id(generator: &mut Generator) -> Id {
    let mut bytes = [0u8; 32];
    generator.fill(&mut bytes);
    Id(bytes)
}

fn index_file(generator: &mut Generator) -> IndexFile {
    let packs = (0..BLOBS / BLOBS_PER_PACK)
        .map(|_| {
            let mut offset = 0u32;
            let blobs = (0..BLOBS_PER_PACK)
                .map(|_| {
                    let stored_length = 600_000 + (generator.below(400_000) as u32);
                    let entry = BlobEntry {
                        id: random_id(generator),
                        kind: BlobKind::Data,
                        flags: BLOB_COMPRESSED,
                        offset,
                        stored_length,
                        raw_length: 1 << 20,
                    };
                    offset += stored_length;
                    entry
                })
                .collect();
            IndexedPack {
                id: random_id(generator),
                size: u64::from(offset) + 1024,
                blobs,
            }
        })
        .collect();
    IndexFile {
        supersedes: Vec::new(),
        packs,
    }
}

fn lookups(c: &mut Criterion) {
    let mut generator = Generator::new(42);
    let file = index_file(&mut generator);
    let mut index = Index::default();
    index.add_file(Id::digest(b"index"), &file);
    let present: Vec<Id> = file
        .packs
        .iter()
        .flat_map(|pack| pack.blobs.iter().map(|blob| blob.id))
        .step_by(97)
        .take(1024)
        .collect();
    let absent: Vec<Id> = (0..1024).map(|_| random_id(&mut generator)).collect();

    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(1024));
    group.bench_with_input(BenchmarkId::new("get_hit", BLOBS), &present, |b, ids| {
        b.iter(|| ids.iter().filter(|id| index.get(id).is_some()).count());
    });
    group.bench_with_input(
        BenchmarkId::new("contains_miss", BLOBS),
        &absent,
        |b, ids| {
            b.iter(|| ids.iter().filter(|id| index.contains(id)).count());
        },
    );
    group.throughput(Throughput::Elements(BLOBS as u64));
    group.bench_function(BenchmarkId::new("load", BLOBS), |b| {
        b.iter(|| {
            let mut index = Index::default();
            index.add_file(Id::digest(b"index"), black_box(&file));
            index.blob_count()
        });
    });
    let encoded = file.encode();
    group.bench_function(BenchmarkId::new("encode", BLOBS), |b| {
        b.iter(|| black_box(&file).encode().len());
    });
    group.bench_function(BenchmarkId::new("decode", BLOBS), |b| {
        b.iter(|| IndexFile::decode("bench", black_box(&encoded)).map(|f| f.packs.len()));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = lookups
}
criterion_main!(benches);
