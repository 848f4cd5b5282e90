//! Checks of single objects: puts and what gets, heads and deletes see of
//! them, create-only races, ranges, empty and large objects, staging.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use futures::future::join_all;

use super::{pseudo_random_bytes, Check, LARGE_SIZE, RACERS};
use crate::sink::{ObjectMeta, PutMode, Sink, SinkExt};
use crate::Error;

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
    let (_, missing) = check.missing_keys_near().await;
    for key in missing {
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
    let (file, missing) = check.missing_keys_near().await;
    for key in missing {
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
