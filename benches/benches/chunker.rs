//! Content-defined chunking (FastCDC) throughput: every byte of a backup
//! goes through it once.

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::internals::chunker::{Chunker, ChunkerParams};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const INPUT_LEN: usize = 32 << 20;

fn chunking(c: &mut Criterion) {
    let Ok(files) = Chunker::new(ChunkerParams::default(), 0x1234_5678) else {
        panic!("the default chunker parameters are valid");
    };
    let Ok(trees) = Chunker::new(ChunkerParams::for_trees(), 0x1234_5678) else {
        panic!("the tree chunker parameters are valid");
    };
    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, input) in data::samples(INPUT_LEN) {
        group.bench_with_input(BenchmarkId::new("split", kind), &input, |b, input| {
            b.iter(|| black_box(files.split(input).len()));
        });
        group.bench_with_input(BenchmarkId::new("stream", kind), &input, |b, input| {
            b.iter(|| {
                files
                    .chunks(&input[..])
                    .map(|chunk| chunk.map_or(0, |chunk| chunk.len()))
                    .sum::<usize>()
            });
        });
        group.bench_with_input(BenchmarkId::new("split_trees", kind), &input, |b, input| {
            b.iter(|| black_box(trees.split(input).len()));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = chunking
}
criterion_main!(benches);
