//! The passwords of an encrypted repository: key files listed, added and
//! removed; a password change that no crash can leave without a working
//! password; nothing but `keys/` touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::{
    BackupOptions, DirectorySnapshotter, Error, InitOptions, KdfParams, MemorySink, Repository,
    RestoreOptions, Sink,
};
use backup_testkit::rng::random_bytes;
use backup_testkit::{FaultPlan, FaultSink};

/// An encrypted repository in memory opened with `password` (cheap key
/// derivation for the test's own key).
async fn encrypted(password: &str) -> (Arc<MemorySink>, Repository) {
    let sink = Arc::new(MemorySink::new());
    let options = InitOptions::default()
        .with_password(password)
        .with_kdf(KdfParams::insecure_for_tests());
    let repo = Repository::init(sink.clone(), options).await.unwrap();
    (sink, repo)
}

/// Every object but the key files, with its bytes.
async fn objects_but_keys(sink: &dyn Sink) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for meta in sink.list("").await.unwrap() {
        if !meta.key.starts_with("keys/") {
            let bytes = sink.get_range(&meta.key, None).await.unwrap();
            out.insert(meta.key, bytes.to_vec());
        }
    }
    out
}

fn refused(error: Error, expected: &str) {
    match error {
        Error::InvalidArgument(message) => assert!(message.contains(expected), "{message}"),
        other => panic!("expected a refusal mentioning {expected:?}, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_keys_open_the_repository_and_are_listed_and_removed() {
    let (sink, first) = encrypted("first").await;
    let keys = first.keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current);
    assert!(!keys[0].hostname.is_empty());
    assert_eq!(keys[0].kdf, KdfParams::insecure_for_tests());
    let original = keys[0].id;

    let added = first.add_key(b"second").await.unwrap();
    let keys = first.keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let new = keys.iter().find(|key| key.id == added).unwrap();
    assert!(!new.current);
    assert_eq!(new.kdf, KdfParams::default(), "the costs init writes");
    assert!(new.created >= keys.iter().find(|key| key.id == original).unwrap().created);

    // Both passwords open it; each handle marks its own key.
    let second = Repository::open(sink.clone(), Some(b"second"))
        .await
        .unwrap();
    let current: Vec<_> = second
        .keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|key| key.current)
        .map(|key| key.id)
        .collect();
    assert_eq!(current, [added]);
    Repository::open(sink.clone(), Some(b"first"))
        .await
        .unwrap();

    // The key in use is refused, by id or by prefix.
    refused(
        second.remove_key(&added.to_hex()).await.unwrap_err(),
        "opened with",
    );
    refused(
        first.remove_key(&original.to_hex()[..6]).await.unwrap_err(),
        "opened with",
    );
    refused(second.remove_key("zz").await.unwrap_err(), "not a key id");

    // The other one goes, and its password no longer opens anything.
    assert_eq!(
        second.remove_key(&original.to_hex()[..10]).await.unwrap(),
        original
    );
    assert!(matches!(
        Repository::open(sink.clone(), Some(b"first")).await,
        Err(Error::WrongPassword)
    ));
    let keys = second.keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current && keys[0].id == added);
    refused(
        second.remove_key(&original.to_hex()).await.unwrap_err(),
        "no key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_readable_key_is_never_removed() {
    let (sink, repo) = encrypted("first").await;
    let added = repo.add_key(b"second").await.unwrap();
    let original = repo
        .keys()
        .await
        .unwrap()
        .into_iter()
        .find(|key| key.current)
        .unwrap()
        .id;
    // Another process removed the key this handle was opened with: the
    // added key is now the only one, and stays.
    sink.delete(&format!("keys/{original}")).await.unwrap();
    refused(repo.remove_key(&added.to_hex()).await.unwrap_err(), "last");
    Repository::open(sink.clone(), Some(b"second"))
        .await
        .unwrap();

    // A damaged key file opens nothing: it does not count as a remaining key.
    let (sink, repo) = encrypted("first").await;
    let added = repo.add_key(b"second").await.unwrap();
    let third = repo.add_key(b"third").await.unwrap();
    let original = repo
        .keys()
        .await
        .unwrap()
        .into_iter()
        .find(|key| key.current)
        .unwrap()
        .id;
    sink.delete(&format!("keys/{original}")).await.unwrap();
    let key = format!("keys/{third}");
    let mut damaged = sink.get_range(&key, None).await.unwrap().to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    sink.put(&key, damaged.into(), backup_core::PutMode::Overwrite)
        .await
        .unwrap();
    refused(repo.remove_key(&added.to_hex()).await.unwrap_err(), "last");
    assert_eq!(
        repo.keys().await.unwrap().len(),
        1,
        "the damaged key is left out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_replaces_the_key_and_touches_nothing_else() {
    let (sink, repo) = encrypted("old").await;
    let source = tempfile::tempdir().unwrap();
    let content = random_bytes(3, 300_000);
    std::fs::write(source.path().join("data.bin"), &content).unwrap();
    repo.backup(
        &DirectorySnapshotter::new(vec![source.path().to_path_buf()]),
        BackupOptions::default(),
    )
    .await
    .unwrap();
    let other = repo.add_key(b"other").await.unwrap();
    let before = objects_but_keys(sink.as_ref()).await;

    let new = repo.change_password(b"new").await.unwrap();
    let keys = repo.keys().await.unwrap();
    let mut listed: Vec<_> = keys.iter().map(|key| (key.id, key.current)).collect();
    listed.sort();
    let mut expected = vec![(new, true), (other, false)];
    expected.sort();
    assert_eq!(listed, expected, "the old key is gone, the other kept");
    assert_eq!(objects_but_keys(sink.as_ref()).await, before);

    assert!(matches!(
        Repository::open(sink.clone(), Some(b"old")).await,
        Err(Error::WrongPassword)
    ));
    for password in [&b"new"[..], b"other"] {
        let reopened = Repository::open(sink.clone(), Some(password))
            .await
            .unwrap();
        let target = tempfile::tempdir().unwrap();
        let backup = reopened.find_backup("latest", None).await.unwrap();
        reopened
            .restore(&backup, target.path(), &RestoreOptions::default())
            .await
            .unwrap();
        let name = source.path().file_name().unwrap();
        assert_eq!(
            std::fs::read(target.path().join(name).join("data.bin")).unwrap(),
            content
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_stopped_at_any_step_leaves_a_working_password() {
    let mut outcomes = Vec::new();
    for step in 0.. {
        let (inner, _) = encrypted("old").await;
        let faulty = Arc::new(FaultSink::new(inner.clone(), FaultPlan::default()));
        let repo = Repository::open(faulty.clone(), Some(b"old"))
            .await
            .unwrap();
        // The storage goes away after `step` more operations: as if the
        // process were killed there.
        faulty.set_plan(FaultPlan {
            gone_after: Some(faulty.counts().operations + step),
            ..FaultPlan::default()
        });
        let finished = repo.change_password(b"new").await.is_ok();
        let opens = |password: &'static [u8]| {
            let inner = inner.clone();
            async move { Repository::open(inner, Some(password)).await.is_ok() }
        };
        let (old, new) = (opens(b"old").await, opens(b"new").await);
        assert!(
            old || new,
            "stopped after {step} operations: no password works"
        );
        outcomes.push((old, new));
        if finished {
            assert_eq!((old, new), (false, true));
            break;
        }
        assert!(step < 20, "the password change never finished");
    }
    // Before the new key is stored, only the old password; in between, both.
    assert_eq!(outcomes.first(), Some(&(true, false)));
    assert!(outcomes.contains(&(true, true)), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_repository_has_no_keys() {
    let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
        .await
        .unwrap();
    refused(repo.keys().await.unwrap_err(), "not encrypted");
    refused(repo.add_key(b"x").await.unwrap_err(), "not encrypted");
    refused(
        repo.change_password(b"x").await.unwrap_err(),
        "not encrypted",
    );
    refused(repo.remove_key("ab").await.unwrap_err(), "not encrypted");
}
