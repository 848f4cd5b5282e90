//! The shared conformance suite: checks that a [`Sink`] keeps the
//! [contract](Sink#contract).
//!
//! Each check is an `async fn` taking `&dyn Sink` that panics with a message
//! naming the check, the sink's location and the violated rule. [`run_all`]
//! runs every check. Modelled on the integration tests of the
//! `object_store` crate.
//!
//! # Running it against another crate's sink
//!
//! Enable the `conformance` feature in the dev-dependencies of the crate that
//! implements the sink:
//!
//! ```toml
//! [dev-dependencies]
//! backup-core = { workspace = true, features = ["conformance"] }
//! ```
//!
//! and call the suite from a test:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // In a test of your own sink, build it instead of this in-memory one.
//! let sink = backup_core::MemorySink::new();
//! backup_core::conformance::run_all(&sink).await;
//! # }
//! ```
//!
//! # What it writes
//!
//! Every check writes only below its own prefix, `conformance/<check>/`,
//! removes anything left there by an earlier interrupted run before it
//! starts, and deletes what it wrote when it passes. Point the suite at a
//! scratch location, never at a real repository. The whole suite writes
//! about 1,300 objects and 21 MiB; on a remote store it takes a few thousand
//! requests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;
use futures::{future::join_all, stream, StreamExt};

use super::{ObjectMeta, PutMode, Sink, SinkExt};
use crate::{Error, Result};

/// Number of concurrent create-only puts racing for one key.
const RACERS: usize = 8;
/// Size of the large object: 20 MiB plus an odd tail, so that no chunk or
/// part size used by a backend divides it evenly.
const LARGE_SIZE: usize = 20 * 1024 * 1024 + 3;
/// Number of keys for the listing test: above the 1,000-key page size of S3
/// and similar stores, so that pagination is exercised.
const MANY_KEYS: usize = 1200;
/// Concurrent requests when putting or deleting many keys.
const CONCURRENCY: usize = 32;

/// Runs every check of the suite, one after the other.
///
/// # Panics
///
/// On the first contract violation, with a message saying which.
pub async fn run_all(sink: &dyn Sink) {
    put_get_round_trip(sink).await;
    overwrite_replaces(sink).await;
    create_only(sink).await;
    concurrent_create_only(sink).await;
    missing_keys(sink).await;
    delete_missing(sink).await;
    delete_removes(sink).await;
    ranged_get(sink).await;
    head_size(sink).await;
    empty_object(sink).await;
    list_by_prefix(sink).await;
    unicode_keys(sink).await;
    invalid_keys(sink).await;
    large_object(sink).await;
    list_many(sink).await;
    staged_objects(sink).await;
}

/// For a sink that stages objects ([`Sink::stage`]): a committed object is
/// exactly the bytes appended, replaces an object under its key, and is
/// listed once; an object dropped uncommitted, or not yet committed, is
/// nowhere to be seen. Sinks that do not stage pass trivially.
///
/// # Panics
///
/// On a contract violation.
pub async fn staged_objects(sink: &dyn Sink) {
    let check = Check::start(sink, "staged").await;
    let key = check.key("pack/object");
    // The staged object's methods block; a check may block briefly.
    let stage = || {
        sink.stage()
            .unwrap_or_else(|error| check.fail(format!("stage failed: {error}")))
    };
    if stage().is_none() {
        check.finish().await;
        return;
    }
    // A piece of 3 MiB crosses any block size a sink is likely to use.
    let pieces: [&[usize]; 3] = [&[1, 4096, 3 << 20, 5], &[], &[100]];
    let mut last = Vec::new();
    for (round, sizes) in pieces.iter().enumerate() {
        let Some(mut staged) = stage() else {
            check.fail("stage returned None after returning an object".into())
        };
        let mut expected = Vec::new();
        for (number, &size) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..size).map(|i| (i * 13 + number + round) as u8).collect();
            check.result(staged.append(&piece), "append to a staged object", &key);
            expected.extend_from_slice(&piece);
        }
        let before = check.list_map(&check.prefix).await;
        check.assert_eq(
            "list before a staged object is committed",
            before.len(),
            usize::from(round > 0),
        );
        check.result(staged.commit(&key), "commit of a staged object", &key);
        check.assert_only(&key, &expected, "after a commit").await;
        last = expected;
    }
    let Some(mut dropped) = stage() else {
        check.fail("stage returned None after returning an object".into())
    };
    check.result(
        dropped.append(b"never committed"),
        "append to a staged object",
        &key,
    );
    drop(dropped);
    check
        .assert_only(&key, &last, "after an uncommitted object was dropped")
        .await;
    check.finish().await;
}

/// What `put` stores, `get` returns, at any depth of key.
///
/// # Panics
///
/// On a contract violation.
pub async fn put_get_round_trip(sink: &dyn Sink) {
    let check = Check::start(sink, "put-get").await;
    let data = Bytes::from_static(b"hello, sink\0\xff\x80 binary \r\n too");
    for key in [check.key("object"), check.key("a/b/c/deep")] {
        check.put(&key, data.clone(), PutMode::Overwrite).await;
        check.assert_bytes(&format!("get of {key:?}"), &check.get(&key).await, &data);
        let whole = check.get_range(&key, None).await;
        check.assert_bytes(&format!("get_range(None) of {key:?}"), &whole, &data);
        check.assert(
            check.result(sink.exists(&key).await, "exists", &key),
            format!("exists({key:?}) is false after a put"),
        );
    }
    check.finish().await;
}

/// An overwriting put replaces the whole object, including when the new one
/// is shorter.
///
/// # Panics
///
/// On a contract violation.
pub async fn overwrite_replaces(sink: &dyn Sink) {
    let check = Check::start(sink, "overwrite").await;
    let key = check.key("object");
    for data in ["first", "second, and longer", "3"] {
        let data = Bytes::from(data);
        check.put(&key, data.clone(), PutMode::Overwrite).await;
        check.assert_bytes("get after an overwrite", &check.get(&key).await, &data);
        check.assert_eq(
            "head size after an overwrite",
            check.head(&key).await.size,
            data.len() as u64,
        );
    }
    let listed = check.list_map(&check.prefix).await;
    check.assert_eq("list after overwrites", listed, BTreeMap::from([(key, 1)]));
    check.finish().await;
}

/// A create-only put fails with [`Error::AlreadyExists`] when the key
/// exists, leaving the object unchanged, and succeeds when it does not.
///
/// # Panics
///
/// On a contract violation.
pub async fn create_only(sink: &dyn Sink) {
    let check = Check::start(sink, "create-only").await;
    let key = check.key("object");
    let original = Bytes::from("original");
    check.put(&key, original.clone(), PutMode::Create).await;
    check.assert_bytes(
        "get after a create-only put",
        &check.get(&key).await,
        &original,
    );

    let result = sink
        .put(&key, Bytes::from("intruder"), PutMode::Create)
        .await;
    check.assert_already_exists("a create-only put of an existing key", &result);
    check.assert_bytes(
        "get after a refused create-only put",
        &check.get(&key).await,
        &original,
    );
    let result = sink.put_new(&key, Bytes::new()).await;
    check.assert_already_exists("put_new of an existing key", &result);

    // An overwrite still replaces, and a deleted key can be created again.
    check
        .put(&key, Bytes::from("replaced"), PutMode::Overwrite)
        .await;
    check.assert_bytes(
        "get after an overwrite",
        &check.get(&key).await,
        b"replaced",
    );
    check.delete(&key).await;
    check.put(&key, Bytes::from("again"), PutMode::Create).await;
    check.assert_bytes("get after re-creating", &check.get(&key).await, b"again");
    check.finish().await;
}

/// Of several concurrent create-only puts of one key, exactly one succeeds,
/// the others fail with [`Error::AlreadyExists`], and the stored object is
/// the winner's.
///
/// # Panics
///
/// On a contract violation.
pub async fn concurrent_create_only(sink: &dyn Sink) {
    let check = Check::start(sink, "concurrent-create").await;
    // A few rounds: one race may not overlap on a fast sink.
    for round in 0..3u64 {
        let key = check.key(&format!("object-{round}"));
        let payloads: Vec<Bytes> = (0..RACERS as u64)
            .map(|racer| pseudo_random_bytes(64 * 1024 + racer as usize, round * 100 + racer))
            .collect();
        let results = join_all(
            payloads
                .iter()
                .map(|data| sink.put(&key, data.clone(), PutMode::Create)),
        )
        .await;
        let mut winners = Vec::new();
        for (racer, result) in results.iter().enumerate() {
            match result {
                Ok(()) => winners.push(racer),
                Err(Error::AlreadyExists { .. }) => {}
                Err(error) => check.fail(format!(
                    "concurrent create-only put {racer} of {key:?} failed with {error} \
                     instead of succeeding or failing with AlreadyExists"
                )),
            }
        }
        let [winner] = winners[..] else {
            check.fail(format!(
                "{} of {RACERS} concurrent create-only puts of {key:?} succeeded \
                 (winners {winners:?}); exactly one must",
                winners.len()
            ))
        };
        check.assert_bytes(
            "get after concurrent create-only puts (must be the winner's data)",
            &check.get(&key).await,
            &payloads[winner],
        );
    }
    check.finish().await;
}

/// `get`, `get_range` and `head` of a missing key fail with
/// [`Error::NotFound`], also below a missing "directory" and below an
/// existing object.
///
/// # Panics
///
/// On a contract violation.
pub async fn missing_keys(sink: &dyn Sink) {
    let check = Check::start(sink, "missing").await;
    let file = check.key("file");
    check.put(&file, Bytes::from("x"), PutMode::Overwrite).await;
    for key in [
        check.key("absent"),
        check.key("no/such/directory/absent"),
        format!("{file}/below-an-object"),
    ] {
        check.assert_not_found(&format!("get of missing {key:?}"), sink.get(&key).await);
        check.assert_not_found(
            &format!("get_range(None) of missing {key:?}"),
            sink.get_range(&key, None).await,
        );
        check.assert_not_found(
            &format!("get_range(0..1) of missing {key:?}"),
            sink.get_range(&key, Some(0..1)).await,
        );
        check.assert_not_found(&format!("head of missing {key:?}"), sink.head(&key).await);
        check.assert(
            !check.result(sink.exists(&key).await, "exists", &key),
            format!("exists({key:?}) is true for a missing key"),
        );
    }
    check.finish().await;
}

/// Deleting a missing key succeeds.
///
/// # Panics
///
/// On a contract violation.
pub async fn delete_missing(sink: &dyn Sink) {
    let check = Check::start(sink, "delete-missing").await;
    let file = check.key("file");
    check.put(&file, Bytes::from("x"), PutMode::Overwrite).await;
    for key in [
        check.key("absent"),
        check.key("no/such/directory/absent"),
        format!("{file}/below-an-object"),
    ] {
        check.delete(&key).await;
    }
    check.assert_bytes(
        "get after deleting other keys",
        &check.get(&file).await,
        b"x",
    );
    check.finish().await;
}

/// A deleted object is gone for `get`, `head` and `list`, and deleting it
/// again succeeds.
///
/// # Panics
///
/// On a contract violation.
pub async fn delete_removes(sink: &dyn Sink) {
    let check = Check::start(sink, "delete").await;
    let key = check.key("dir/object");
    let neighbour = check.key("dir/neighbour");
    check
        .put(&key, Bytes::from("doomed"), PutMode::Overwrite)
        .await;
    check
        .put(&neighbour, Bytes::from("stays"), PutMode::Overwrite)
        .await;
    check.delete(&key).await;
    check.assert_not_found("get after delete", sink.get(&key).await);
    check.assert_not_found("head after delete", sink.head(&key).await);
    let listed = check.list_map(&check.prefix).await;
    check.assert_eq(
        "list after delete",
        listed,
        BTreeMap::from([(neighbour.clone(), 5)]),
    );
    check.delete(&key).await;
    check.assert_bytes(
        "get of a neighbour after delete",
        &check.get(&neighbour).await,
        b"stays",
    );
    check.finish().await;
}

/// `get_range` returns exactly the bytes asked for, truncates a range that
/// ends past the end, and fails for a range that starts at or past the end.
///
/// # Panics
///
/// On a contract violation.
pub async fn ranged_get(sink: &dyn Sink) {
    let check = Check::start(sink, "ranges").await;
    let key = check.key("object");
    let data = pseudo_random_bytes(1000, 1);
    check.put(&key, data.clone(), PutMode::Overwrite).await;
    let cases: [(Range<u64>, Range<usize>); 7] = [
        (0..10, 0..10),
        (100..200, 100..200),
        (999..1000, 999..1000),
        (990..1000, 990..1000),
        (0..1000, 0..1000),
        (995..2000, 995..1000),
        (500..u64::MAX, 500..1000),
    ];
    for (range, expected) in cases {
        let got = check.get_range(&key, Some(range.clone())).await;
        check.assert_bytes(&format!("get_range({range:?})"), &got, &data[expected]);
    }
    for range in [1000..1001, 1000..2000, 2000..3000] {
        if let Ok(got) = sink.get_range(&key, Some(range.clone())).await {
            check.fail(format!(
                "get_range({range:?}) of a 1000-byte object returned {} bytes instead of an error",
                got.len()
            ));
        }
    }
    check.finish().await;
}

/// `head` returns the key and the exact size.
///
/// # Panics
///
/// On a contract violation.
pub async fn head_size(sink: &dyn Sink) {
    let check = Check::start(sink, "head").await;
    for size in [1, 1000, 65_537] {
        let key = check.key(&format!("object-{size}"));
        check
            .put(&key, pseudo_random_bytes(size, 2), PutMode::Overwrite)
            .await;
        let meta = check.head(&key).await;
        check.assert_eq(
            "head",
            meta,
            ObjectMeta {
                key,
                size: size as u64,
            },
        );
    }
    check.finish().await;
}

/// An empty object is stored, read, listed and counts as existing.
///
/// # Panics
///
/// On a contract violation.
pub async fn empty_object(sink: &dyn Sink) {
    let check = Check::start(sink, "empty").await;
    let key = check.key("empty");
    check.put(&key, Bytes::new(), PutMode::Create).await;
    check.assert_bytes("get of an empty object", &check.get(&key).await, b"");
    check.assert_bytes(
        "get_range(None) of an empty object",
        &check.get_range(&key, None).await,
        b"",
    );
    check.assert_eq(
        "head size of an empty object",
        check.head(&key).await.size,
        0,
    );
    let listed = check.list_map(&check.prefix).await;
    check.assert_eq(
        "list of an empty object",
        listed,
        BTreeMap::from([(key.clone(), 0)]),
    );
    let result = sink.put(&key, Bytes::new(), PutMode::Create).await;
    check.assert_already_exists("a create-only put over an empty object", &result);
    if let Ok(got) = sink.get_range(&key, Some(0..1)).await {
        check.fail(format!(
            "get_range(0..1) of an empty object returned {} bytes instead of an error",
            got.len()
        ));
    }
    check.finish().await;
}

/// A 20 MiB object of non-repeating bytes comes back byte for byte, whole
/// and in ranges.
///
/// # Panics
///
/// On a contract violation.
pub async fn large_object(sink: &dyn Sink) {
    let check = Check::start(sink, "large").await;
    let key = check.key("large");
    let data = pseudo_random_bytes(LARGE_SIZE, 3);
    check.put(&key, data.clone(), PutMode::Overwrite).await;
    check.assert_eq(
        "head size of the large object",
        check.head(&key).await.size,
        LARGE_SIZE as u64,
    );
    check.assert_bytes("get of the large object", &check.get(&key).await, &data);
    let mib = 1024 * 1024;
    for range in [
        7 * mib + 5..13 * mib + 11,
        LARGE_SIZE - 10..LARGE_SIZE + 1000,
    ] {
        let got = check
            .get_range(&key, Some(range.start as u64..range.end as u64))
            .await;
        let expected = &data[range.start..range.end.min(LARGE_SIZE)];
        check.assert_bytes(
            &format!("get_range({range:?}) of the large object"),
            &got,
            expected,
        );
    }
    let listed = check.list_map(&check.prefix).await;
    check.assert_eq(
        "list of the large object",
        listed,
        BTreeMap::from([(key, LARGE_SIZE as u64)]),
    );
    check.finish().await;
}

/// `list(prefix)` returns exactly the objects whose keys start with the
/// prefix, as a plain string prefix (`p/ab` matches `p/abc` and `p/ab/x`),
/// each once and with its size.
///
/// # Panics
///
/// On a contract violation.
pub async fn list_by_prefix(sink: &dyn Sink) {
    let check = Check::start(sink, "list-prefix").await;
    let stored: BTreeMap<String, u64> = [
        ("p/abc", 3),
        ("p/ab/x", 5),
        ("p/ab/y/z", 7),
        ("p/abd/e", 1),
        ("p/a", 2),
        ("p/b/ab", 4),
        ("q/ab", 6),
    ]
    .into_iter()
    .map(|(key, size)| (check.key(key), size))
    .collect();
    for (key, size) in &stored {
        check
            .put(
                key,
                Bytes::from(vec![b'x'; *size as usize]),
                PutMode::Overwrite,
            )
            .await;
    }
    for prefix in [
        "",
        "p",
        "p/",
        "p/a",
        "p/ab",
        "p/ab/",
        "p/ab/y/z",
        "p/abc",
        "p/abc/",
        "p/zzz",
        "missing/directory/",
        "q/ab",
    ] {
        let prefix = check.key(prefix);
        let expected: BTreeMap<String, u64> = stored
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(key, size)| (key.clone(), *size))
            .collect();
        let listed = check.list_map(&prefix).await;
        check.assert_eq(&format!("list({prefix:?})"), listed, expected);
    }
    check.finish().await;
}

/// Listing more keys than one page of a remote store returns all of them,
/// each once.
///
/// # Panics
///
/// On a contract violation.
pub async fn list_many(sink: &dyn Sink) {
    let check = Check::start(sink, "many").await;
    let stored: BTreeMap<String, u64> = (0..MANY_KEYS)
        .map(|i| (check.key(&format!("{i:04}")), (i % 17) as u64))
        .collect();
    let puts = stored.iter().map(|(key, size)| async move {
        let data = Bytes::from(vec![b'm'; *size as usize]);
        (key, sink.put(key, data, PutMode::Overwrite).await)
    });
    let mut results = stream::iter(puts).buffer_unordered(CONCURRENCY);
    while let Some((key, result)) = results.next().await {
        check.result(result, "put", key);
    }

    let listed = check.list_map(&check.prefix).await;
    check.assert_eq(&format!("list of {MANY_KEYS} keys"), listed, stored.clone());
    // A prefix inside the key names: keys 1000 to 1199.
    let prefix = check.key("1");
    let expected: BTreeMap<String, u64> = stored
        .iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .map(|(key, size)| (key.clone(), *size))
        .collect();
    let listed = check.list_map(&prefix).await;
    check.assert_eq(&format!("list({prefix:?})"), listed, expected);
    check.finish().await;
}

/// Keys with non-ASCII and URL-reserved characters round trip and list.
///
/// # Panics
///
/// On a contract violation.
pub async fn unicode_keys(sink: &dyn Sink) {
    let check = Check::start(sink, "unicode").await;
    let keys = [
        check.key("日本語/ключ-é.bin"),
        check.key("emoji-🦀/with space+plus"),
        check.key("reserved %20#?&=~;@!$'(),"),
        check.key(".hidden"),
    ];
    let mut stored = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let data = Bytes::from(format!("object {i} under {key}"));
        check.put(key, data.clone(), PutMode::Create).await;
        check.assert_bytes(&format!("get of {key:?}"), &check.get(key).await, &data);
        check.assert_eq(
            &format!("head size of {key:?}"),
            check.head(key).await.size,
            data.len() as u64,
        );
        stored.insert(key.clone(), data.len() as u64);
    }
    let listed = check.list_map(&check.prefix).await;
    check.assert_eq("list of unicode keys", listed, stored.clone());
    let prefix = check.key("日本");
    let listed = check.list_map(&prefix).await;
    let expected = BTreeMap::from([(keys[0].clone(), stored[&keys[0]])]);
    check.assert_eq(&format!("list({prefix:?})"), listed, expected);
    check.finish().await;
}

/// Keys breaking the key rules are rejected by every operation, and nothing
/// is written.
///
/// # Panics
///
/// On a contract violation.
pub async fn invalid_keys(sink: &dyn Sink) {
    let check = Check::start(sink, "invalid-keys").await;
    let mut keys: Vec<String> = ["", "a//b", "../x"].map(String::from).to_vec();
    keys.extend(
        [
            "a//b",
            "../x",
            "sub/../../x",
            "./x",
            "a/./b",
            "x/",
            "nul\0byte",
        ]
        .map(|k| check.key(k)),
    );
    keys.push(format!("/{}x", check.prefix));
    for key in &keys {
        for mode in [PutMode::Overwrite, PutMode::Create] {
            if sink.put(key, Bytes::from("bad"), mode).await.is_ok() {
                check.fail(format!("put of the invalid key {key:?} succeeded"));
            }
        }
        if sink.get(key).await.is_ok() {
            check.fail(format!("get of the invalid key {key:?} succeeded"));
        }
        if sink.head(key).await.is_ok() {
            check.fail(format!("head of the invalid key {key:?} succeeded"));
        }
        if sink.delete(key).await.is_ok() {
            check.fail(format!("delete of the invalid key {key:?} succeeded"));
        }
    }
    // Where a sink that normalised the keys would have written.
    let parent = check.prefix.trim_end_matches('/').to_owned();
    let listed = check.list_map(&parent).await;
    check.assert_eq("list after puts of invalid keys", listed, BTreeMap::new());
    let escaped = "conformance/x";
    check.assert_not_found(
        &format!(
            "head of {escaped:?} after a put of {:?}",
            check.key("sub/../../x")
        ),
        sink.head(escaped).await,
    );
    check.finish().await;
}

/// One running check: its sink, name and key prefix, and helpers that turn
/// failures into panics naming all three.
struct Check<'a> {
    sink: &'a dyn Sink,
    name: &'static str,
    prefix: String,
}

impl<'a> Check<'a> {
    /// Starts a check, removing what an interrupted earlier run left behind.
    async fn start(sink: &'a dyn Sink, name: &'static str) -> Self {
        let check = Self {
            sink,
            name,
            prefix: format!("conformance/{name}/"),
        };
        check.clear().await;
        check
    }

    /// Deletes what the check wrote and verifies that it is gone.
    async fn finish(self) {
        self.clear().await;
        let left = self.list(&self.prefix).await;
        self.assert(
            left.is_empty(),
            format!("list after deleting everything still returns {left:?}"),
        );
    }

    async fn clear(&self) {
        let objects = self.list(&self.prefix).await;
        let deletes = objects
            .iter()
            .map(|object| async move { (&object.key, self.sink.delete(&object.key).await) });
        let mut results = stream::iter(deletes).buffer_unordered(CONCURRENCY);
        while let Some((key, result)) = results.next().await {
            self.result(result, "delete", key);
        }
    }

    /// Checks that `key` holds `expected` and is the only object listed
    /// under the check's prefix.
    async fn assert_only(&self, key: &str, expected: &[u8], when: &str) {
        self.assert_bytes(&format!("get {when}"), &self.get(key).await, expected);
        self.assert_eq(
            &format!("list {when}"),
            self.list_map(&self.prefix).await,
            BTreeMap::from([(key.to_string(), expected.len() as u64)]),
        );
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "sink conformance check `{}` failed on {}: {message}",
            self.name,
            self.sink.location()
        )
    }

    fn assert(&self, condition: bool, message: String) {
        if !condition {
            self.fail(message);
        }
    }

    fn assert_eq<T: PartialEq + Debug>(&self, what: &str, got: T, expected: T) {
        if got != expected {
            self.fail(format!("{what}: got {got:?}, expected {expected:?}"));
        }
    }

    /// Compares bytes, reporting lengths and the first difference rather
    /// than dumping megabytes.
    fn assert_bytes(&self, what: &str, got: &[u8], expected: &[u8]) {
        if got == expected {
            return;
        }
        let first_difference = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        self.fail(format!(
            "{what}: got {} bytes, expected {}; they first differ at offset {first_difference}",
            got.len(),
            expected.len()
        ));
    }

    fn assert_not_found<T: Debug>(&self, what: &str, result: Result<T>) {
        match result {
            Err(Error::NotFound { .. }) => {}
            Err(error) => self.fail(format!(
                "{what}: expected Error::NotFound, got error {error}"
            )),
            Ok(value) => self.fail(format!(
                "{what}: expected Error::NotFound, got Ok({value:?})"
            )),
        }
    }

    fn assert_already_exists(&self, what: &str, result: &Result<()>) {
        match result {
            Err(Error::AlreadyExists { .. }) => {}
            Err(error) => self.fail(format!(
                "{what}: expected Error::AlreadyExists, got error {error}"
            )),
            Ok(()) => self.fail(format!("{what}: expected Error::AlreadyExists, got Ok")),
        }
    }

    /// Unwraps the result of an operation that must succeed.
    fn result<T>(&self, result: Result<T>, operation: &str, key: &str) -> T {
        result.unwrap_or_else(|error| self.fail(format!("{operation} of {key:?} failed: {error}")))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) {
        self.result(self.sink.put(key, data, mode).await, "put", key);
    }

    async fn get(&self, key: &str) -> Bytes {
        self.result(self.sink.get(key).await, "get", key)
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Bytes {
        let operation = format!("get_range({range:?})");
        self.result(self.sink.get_range(key, range).await, &operation, key)
    }

    async fn head(&self, key: &str) -> ObjectMeta {
        self.result(self.sink.head(key).await, "head", key)
    }

    async fn delete(&self, key: &str) {
        self.result(self.sink.delete(key).await, "delete", key);
    }

    async fn list(&self, prefix: &str) -> Vec<ObjectMeta> {
        self.result(self.sink.list(prefix).await, "list", prefix)
    }

    /// Lists `prefix` as key to size, failing on duplicate keys.
    async fn list_map(&self, prefix: &str) -> BTreeMap<String, u64> {
        let mut listed = BTreeMap::new();
        for object in self.list(prefix).await {
            if listed.insert(object.key.clone(), object.size).is_some() {
                self.fail(format!("list({prefix:?}) returned {:?} twice", object.key));
            }
        }
        listed
    }
}

/// Deterministic, non-repeating bytes (SplitMix64), different per seed.
fn pseudo_random_bytes(len: usize, seed: u64) -> Bytes {
    let mut state = seed;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes.truncate(len);
    Bytes::from(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::path::Path;

    use async_trait::async_trait;
    use futures::FutureExt;

    use super::*;
    use crate::sink::{LocalSink, MemorySink};

    #[tokio::test]
    async fn memory_sink_conforms() {
        let sink = MemorySink::new();
        run_all(&sink).await;
        assert!(sink.keys().is_empty(), "{:?}", sink.keys());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_sink_conforms() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        let sink = LocalSink::create(&root).unwrap();
        run_all(&sink).await;
        // Nothing escaped the root, and no file (temporary or not) remains.
        let outside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["repo"]);
        assert_eq!(files_below(&root), Vec::<String>::new());
    }

    fn files_below(dir: &Path) -> Vec<String> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                files.extend(files_below(&entry.path()));
            } else {
                files.push(entry.path().display().to_string());
            }
        }
        files
    }

    #[test]
    fn pseudo_random_bytes_do_not_repeat() {
        let data = pseudo_random_bytes(1 << 20, 3);
        assert_eq!(data.len(), 1 << 20);
        assert_eq!(data, pseudo_random_bytes(1 << 20, 3));
        assert_ne!(data[..4096], data[4096..8192]);
        assert_ne!(data[..64], pseudo_random_bytes(64, 4)[..]);
    }

    /// A memory sink with one deliberate contract violation.
    #[derive(Debug)]
    struct Broken {
        inner: MemorySink,
        flaw: Flaw,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Flaw {
        CreateOverwrites,
        DeleteMissingFails,
        ListDuplicates,
        ListWholeSegmentsOnly,
        RangesNotTruncated,
        AcceptsInvalidKeys,
    }

    #[async_trait]
    impl Sink for Broken {
        async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
            match self.flaw {
                Flaw::CreateOverwrites => self.inner.put(key, data, PutMode::Overwrite).await,
                Flaw::AcceptsInvalidKeys => {
                    self.inner.raw_put(key, data);
                    Ok(())
                }
                _ => self.inner.put(key, data, mode).await,
            }
        }

        async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
            if self.flaw == Flaw::RangesNotTruncated {
                if let Some(range) = &range {
                    let size = self.inner.head(key).await?.size;
                    if range.end > size {
                        return Err(Error::InvalidArgument("range past end".into()));
                    }
                }
            }
            self.inner.get_range(key, range).await
        }

        async fn head(&self, key: &str) -> Result<ObjectMeta> {
            self.inner.head(key).await
        }

        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            let mut objects = self.inner.list(prefix).await?;
            match self.flaw {
                Flaw::ListDuplicates => objects.extend(objects.clone().into_iter().take(1)),
                Flaw::ListWholeSegmentsOnly => {
                    let directory = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
                    objects.retain(|object| {
                        let rest = &object.key[directory.len()..];
                        prefix.len() == directory.len()
                            || rest.split('/').next() == Some(&prefix[directory.len()..])
                    });
                }
                _ => {}
            }
            Ok(objects)
        }

        async fn delete(&self, key: &str) -> Result<()> {
            if self.flaw == Flaw::DeleteMissingFails && self.inner.raw_get(key).is_none() {
                return Err(Error::NotFound { key: key.into() });
            }
            self.inner.delete(key).await
        }

        fn location(&self) -> String {
            format!("broken://{:?}", self.flaw)
        }
    }

    async fn panics(check: impl Future<Output = ()>) -> bool {
        AssertUnwindSafe(check).catch_unwind().await.is_err()
    }

    #[tokio::test]
    async fn checks_catch_violations() {
        let broken = |flaw| Broken {
            inner: MemorySink::new(),
            flaw,
        };
        let sink = broken(Flaw::CreateOverwrites);
        assert!(panics(create_only(&sink)).await);
        assert!(panics(concurrent_create_only(&sink)).await);
        assert!(panics(delete_missing(&broken(Flaw::DeleteMissingFails))).await);
        assert!(panics(list_by_prefix(&broken(Flaw::ListDuplicates))).await);
        assert!(panics(list_by_prefix(&broken(Flaw::ListWholeSegmentsOnly))).await);
        assert!(panics(ranged_get(&broken(Flaw::RangesNotTruncated))).await);
        assert!(panics(invalid_keys(&broken(Flaw::AcceptsInvalidKeys))).await);
        // The same sinks pass the checks their flaw does not affect.
        put_get_round_trip(&broken(Flaw::CreateOverwrites)).await;
        ranged_get(&broken(Flaw::ListDuplicates)).await;
    }
}
