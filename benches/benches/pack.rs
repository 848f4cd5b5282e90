//! Pack writing (blobs appended, header sealed, pack id hashed) and header
//! reading, for a pack of 16 one-MiB blobs (throughput: stored bytes for
//! writing, blobs for reading the header).

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::internals::crypto::MasterKey;
use backup_core::internals::pack::{encode_blob, read_header, BlobKind, PackBuilder};
use backup_core::Id;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BLOBS: usize = 16;
const CHUNK_LEN: usize = 1 << 20;

struct Encoded {
    id: Id,
    flags: u8,
    raw_length: u32,
    stored: Vec<u8>,
}

fn packs(c: &mut Criterion) {
    let key = MasterKey::generate();
    let blobs: Vec<Encoded> = (0..BLOBS)
        .map(|n| {
            let chunk = data::mixed(CHUNK_LEN, n as u64);
            let id = key.chunk_id(&chunk);
            let (stored, flags) = encode_blob(&id, BlobKind::Data, &chunk, Some(&key), 3);
            Encoded {
                id,
                flags,
                raw_length: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
                stored,
            }
        })
        .collect();
    let stored_len: usize = blobs.iter().map(|blob| blob.stored.len()).sum();
    let build = || {
        let mut builder = PackBuilder::with_capacity(stored_len + 4096);
        for blob in &blobs {
            builder.add(
                blob.id,
                BlobKind::Data,
                blob.flags,
                blob.raw_length,
                &blob.stored,
            );
        }
        builder.finish(Some(&key))
    };

    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Bytes(stored_len as u64));
    group.bench_function("write_16_blobs", |b| b.iter(|| black_box(build()).0));
    let (_, pack, _) = build();
    group.throughput(Throughput::Elements(BLOBS as u64));
    group.bench_function("read_header_16_blobs", |b| {
        b.iter(|| read_header("bench", black_box(&pack), Some(&key)).map(|e| e.len()));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = packs
}
criterion_main!(benches);
