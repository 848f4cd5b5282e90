//! XChaCha20-Poly1305 sealing and opening, alone and as part of the whole
//! blob path (compress, encrypt, and back with the id check); the key
//! derivation that opening a repository starts with.

use std::hint::black_box;
use std::time::Duration;

use backup_benches::data;
use backup_core::internals::config::KeyFile;
use backup_core::internals::crypto::{KdfParams, MasterKey};
use backup_core::internals::pack::{decode_blob, encode_blob, BlobEntry, BlobKind};
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

/// Opening a key file with the default costs (Argon2id by the `argon2`
/// crate, 64 MiB, 3 passes, 4 lanes, in memory mapped with huge pages where
/// the system allows, then the unwrap), beside the crate's derivation with
/// the same costs and memory it allocates itself.
fn key_derivation(c: &mut Criterion) {
    let master = MasterKey::generate();
    let params = KdfParams::default();
    let Ok(key_file) = KeyFile::create(&master, b"password", params, b"config", "bench".into())
    else {
        panic!("a key file is created with the default costs");
    };
    let Ok(costs) = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    ) else {
        panic!("the default costs are valid Argon2 parameters");
    };
    let crate_argon2 =
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, costs);
    let mut group = c.benchmark_group("key_derivation");
    group.bench_function("open_key_file", |b| {
        b.iter(|| {
            key_file
                .open("bench", black_box(b"password"), b"config")
                .map(|key| key.is_some())
        });
    });
    group.bench_function("argon2_crate", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            crate_argon2
                .hash_password_into(black_box(b"password"), b"0123456789abcdef", &mut out)
                .map(|()| out)
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
    targets = sealing, blobs, key_derivation
}
criterion_main!(benches);
