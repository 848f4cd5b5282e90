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
//!
//! The checks are grouped by what they exercise: objects (put, get, head,
//! delete, ranges, staging) in `objects`, listings in `listing`, key names in
//! `keys`; the helper they share is `Check`, here.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;
use futures::{stream, StreamExt};

use super::{ObjectMeta, PutMode, Sink, SinkExt};
use crate::{Error, Result};

mod keys;
mod listing;
mod objects;

#[cfg(test)]
mod tests;

pub use keys::{invalid_keys, unicode_keys};
pub use listing::{list_by_prefix, list_many};
pub use objects::{
    concurrent_create_only, create_only, delete_missing, delete_removes, empty_object, head_size,
    large_object, missing_keys, overwrite_replaces, put_get_round_trip, ranged_get, staged_objects,
};

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

    /// Asserts that `list(prefix)` returns exactly the objects of `stored`
    /// (keys and sizes) whose keys start with `prefix`.
    async fn assert_lists(&self, prefix: &str, stored: &BTreeMap<String, u64>) {
        let expected: BTreeMap<String, u64> = stored
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, size)| (key.clone(), *size))
            .collect();
        let listed = self.list_map(prefix).await;
        self.assert_eq(&format!("list({prefix:?})"), listed, expected);
    }

    /// Puts a small object `file` and returns its key with three keys that
    /// name no object: absent, below a missing "directory", below `file`.
    async fn missing_keys_near(&self) -> (String, [String; 3]) {
        let file = self.key("file");
        self.put(&file, Bytes::from("x"), PutMode::Overwrite).await;
        let missing = [
            self.key("absent"),
            self.key("no/such/directory/absent"),
            format!("{file}/below-an-object"),
        ];
        (file, missing)
    }

    /// The key `rest` under this check's prefix.
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
