//! Chunk ids: plain SHA-256 (unencrypted repositories, pack ids, envelope
//! checksums) and keyed HMAC-SHA-256 (encrypted repositories).

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::internals::crypto::MasterKey;
use backup_core::Id;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn hashing(c: &mut Criterion) {
    let key = MasterKey::generate();
    let mut group = c.benchmark_group("hashing");
    for len in [4 << 10, 1 << 20] {
        let input = data::random(len, 1);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("sha256", len), &input, |b, input| {
            b.iter(|| Id::digest(black_box(input)));
        });
        group.bench_with_input(BenchmarkId::new("keyed_id", len), &input, |b, input| {
            b.iter(|| key.chunk_id(black_box(input)));
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
    targets = hashing
}
criterion_main!(benches);
