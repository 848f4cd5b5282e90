//! Checks of key names: any Unicode is stored as given, and keys breaking
//! the key rules are refused by every operation.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Check;
use crate::sink::{PutMode, Sink, SinkExt};

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
