//! XChaCha20-Poly1305 sealing and opening, alone and as part of the whole
//! blob path (compress, encrypt, and back with the id check).

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::crypto::MasterKey;
use backup_core::pack::{decode_blob, encode_blob, BlobEntry, BlobKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHUNK_LEN: usize = 1 << 20;

fn sealing(c: &mut Criterion) {
    let key = MasterKey::generate();
    let mut group = c.benchmark_group("encryption");
    for len in [4 << 10, CHUNK_LEN] {
        let input = data::random(len, 1);
        let sealed = key.seal(&input, b"associated");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("seal", len), &input, |b, input| {
            b.iter(|| key.seal(black_box(input), b"associated"));
        });
        group.bench_with_input(BenchmarkId::new("open", len), &sealed, |b, sealed| {
            b.iter(|| key.open(black_box(sealed), b"associated"));
        });
    }
    group.finish();
}

fn blobs(c: &mut Criterion) {
    let key = MasterKey::generate();
    let mut group = c.benchmark_group("blob");
    group.throughput(Throughput::Bytes(CHUNK_LEN as u64));
    for (kind, input) in data::samples(CHUNK_LEN) {
        let id = key.chunk_id(&input);
        group.bench_with_input(BenchmarkId::new("encode", kind), &input, |b, input| {
            b.iter(|| encode_blob(&id, BlobKind::Data, black_box(input), Some(&key), 3));
        });
        let (stored, flags) = encode_blob(&id, BlobKind::Data, &input, Some(&key), 3);
        let entry = BlobEntry {
            id,
            kind: BlobKind::Data,
            flags,
            offset: 0,
            stored_length: u32::try_from(stored.len()).unwrap_or(u32::MAX),
            raw_length: u32::try_from(input.len()).unwrap_or(u32::MAX),
        };
        group.bench_with_input(BenchmarkId::new("decode", kind), &stored, |b, stored| {
            b.iter(|| decode_blob("bench", &entry, black_box(stored), Some(&key)).map(|p| p.len()));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = sealing, blobs
}
criterion_main!(benches);
