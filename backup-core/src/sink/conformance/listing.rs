//! Checks of `list`: plain string prefixes, and more keys than a page.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{stream, StreamExt};

use super::{Check, CONCURRENCY, MANY_KEYS};
use crate::sink::{PutMode, Sink};

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
        check.assert_lists(&prefix, &stored).await;
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
    check.assert_lists(&prefix, &stored).await;
    check.finish().await;
}
