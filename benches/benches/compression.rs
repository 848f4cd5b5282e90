//! zstd at the repository's default level (3) on 1 MiB chunks of each kind
//! of data, and the bounded decompression every read goes through.

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::internals::envelope::decompress_bounded;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CHUNK_LEN: usize = 1 << 20;
const LEVEL: i32 = 3;

fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression");
    group.throughput(Throughput::Bytes(CHUNK_LEN as u64));
    for (kind, input) in data::samples(CHUNK_LEN) {
        group.bench_with_input(BenchmarkId::new("zstd3", kind), &input, |b, input| {
            b.iter(|| zstd::bulk::compress(black_box(input), LEVEL).map(|out| out.len()));
        });
        let Ok(compressed) = zstd::bulk::compress(&input, LEVEL) else {
            panic!("zstd compresses an in-memory buffer");
        };
        group.bench_with_input(
            BenchmarkId::new("decompress", kind),
            &compressed,
            |b, compressed| {
                b.iter(|| {
                    decompress_bounded(black_box(compressed), CHUNK_LEN).map(|out| out.len())
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = compression
}
criterion_main!(benches);
