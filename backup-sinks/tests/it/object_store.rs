//! The object store sink against real servers started by the tests: s3s-fs
//! and moto (S3) and Azurite (Azure), plus object_store's `InMemory` and
//! `LocalFileSystem`; and its URL and option handling (GCS has no emulator
//! here, so only its configuration is tested).
//!
//! Every server-backed test fails, never skips, when its server is not
//! installed: run scripts/install-test-servers.sh.

use std::sync::Arc;

use backup_core::conformance;
use backup_core::DirectorySnapshotter;
use backup_core::{
    BackupOptions, Error, InitOptions, KdfParams, PutMode, Repository, RestoreOptions, Sink,
    SinkExt,
};
use backup_sinks::object_store::upstream::local::LocalFileSystem;
use backup_sinks::object_store::upstream::memory::InMemory;
use backup_sinks::object_store::upstream::path::Path as StorePath;
use backup_sinks::object_store::upstream::ObjectStoreExt;
use backup_sinks::object_store::{ObjectStoreOptions, ObjectStoreSink};
use backup_testkit::repo::verify_data;
use backup_testkit::rng::random_bytes;
use backup_testkit::server::azure::{start_azurite, AzureServer, AZURITE_KEY};
use backup_testkit::server::s3::{start_moto, start_s3s_fs, S3Server};
use backup_testkit::server::RefusedPort;
use backup_testkit::tree::{assert_same_tree, generate_tree, TreeSpec};
use bytes::Bytes;

use crate::is_permanent_sink_error;

const MIB: usize = 1024 * 1024;

/// Non-repeating bytes, so that a misplaced part shows.
fn pseudo_random(len: usize, seed: u64) -> Bytes {
    Bytes::from(random_bytes(seed, len))
}

/// Options that reach `s3`.
fn s3_options(s3: &S3Server) -> ObjectStoreOptions {
    ObjectStoreOptions {
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".into()),
        allow_http: Some(true),
        access_key_id: Some(s3.access_key.clone()),
        secret_access_key: Some(s3.secret_key.clone()),
        // Fail fast in tests rather than retrying for minutes.
        max_retries: 2,
        ..Default::default()
    }
}

/// Options that reach `azure`.
fn azure_options(azure: &AzureServer) -> ObjectStoreOptions {
    ObjectStoreOptions {
        endpoint: Some(azure.endpoint()),
        azure_use_emulator: true,
        max_retries: 2,
        ..Default::default()
    }
}

/// A sink on `url` with `options`.
fn sink(url: &str, options: &ObjectStoreOptions) -> ObjectStoreSink {
    ObjectStoreSink::from_url(url, options).unwrap_or_else(|error| panic!("opening {url}: {error}"))
}

/// A sink on `s3://bucket/prefix` of `s3`.
fn s3_sink(s3: &S3Server, prefix: &str, options: ObjectStoreOptions) -> ObjectStoreSink {
    sink(&format!("s3://{}/{prefix}", s3.bucket), &options)
}

/// A sink on `az://container/prefix` of `azure`.
fn azure_sink(azure: &AzureServer, prefix: &str, options: ObjectStoreOptions) -> ObjectStoreSink {
    sink(&format!("az://{}/{prefix}", azure.container), &options)
}

// ---------------------------------------------------------------------------
// Conformance

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_s3_on_s3s_fs() {
    let s3 = start_s3s_fs();
    let sink = s3_sink(&s3, "conformance-root", s3_options(&s3));
    conformance::run_all(&sink).await;
    assert!(sink.multipart_uploads() >= 1, "{:?}", sink.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_s3_on_moto() {
    let s3 = start_moto();
    let sink = s3_sink(&s3, "", s3_options(&s3));
    conformance::run_all(&sink).await;
    assert!(sink.multipart_uploads() >= 1, "{:?}", sink.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_azure_on_azurite() {
    let azure = start_azurite();
    let sink = azure_sink(&azure, "some/prefix", azure_options(&azure));
    conformance::run_all(&sink).await;
    assert!(sink.multipart_uploads() >= 1, "{:?}", sink.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_object_store_in_memory() {
    let sink =
        ObjectStoreSink::new(Arc::new(InMemory::new()), "repo", "memory:///repo".into()).unwrap();
    conformance::run_all(&sink).await;
    assert!(sink.multipart_uploads() >= 1, "{:?}", sink.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_object_store_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path())
        .unwrap()
        .with_fsync(true)
        .with_automatic_cleanup(true);
    let location = format!("file://{}", dir.path().display());
    let sink = ObjectStoreSink::new(Arc::new(store), "", location).unwrap();
    conformance::run_all(&sink).await;
    assert!(sink.multipart_uploads() >= 1, "{:?}", sink.stats());
}

// ---------------------------------------------------------------------------
// Multipart uploads and large create-only puts

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_object_is_uploaded_in_parts_on_s3s_fs() {
    let s3 = start_s3s_fs();
    let options = ObjectStoreOptions {
        multipart_threshold: 16 * MIB as u64,
        multipart_part_size: 8 * MIB as u64,
        ..s3_options(&s3)
    };
    let sink = s3_sink(&s3, "multipart", options);
    let data = pseudo_random(40 * MIB, 7);
    sink.put("packs/big", data.clone(), PutMode::Overwrite)
        .await
        .unwrap();

    // The sink's counters: one upload of five 8 MiB parts.
    let stats = sink.stats();
    assert_eq!(stats.multipart_uploads, 1, "{stats:?}");
    assert_eq!(stats.multipart_parts, 5, "{stats:?}");
    assert_eq!(stats.single_puts, 0, "{stats:?}");
    // And the server's view: a multipart ETag ends in `-<number of parts>`.
    let meta = sink
        .store()
        .head(&StorePath::from("multipart/packs/big"))
        .await
        .unwrap();
    let etag = meta.e_tag.expect("s3s-fs returns an ETag");
    assert!(etag.trim_matches('"').ends_with("-5"), "ETag {etag}");

    assert_eq!(
        sink.head("packs/big").await.unwrap().size,
        data.len() as u64
    );
    let back = sink.get("packs/big").await.unwrap();
    assert!(
        back == data,
        "the object read back differs from the one put"
    );
    let range = sink
        .get_range("packs/big", Some(8 * MIB as u64 - 3..8 * MIB as u64 + 5))
        .await
        .unwrap();
    assert_eq!(range, data.slice(8 * MIB - 3..8 * MIB + 5));

    // Below the threshold: one request.
    sink.put("small", pseudo_random(MIB, 1), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(sink.stats().single_puts, 1);
    assert_eq!(sink.stats().multipart_uploads, 1);
}

/// A create-only put above the threshold: parts to a temporary object, a
/// copy that refuses to overwrite, and no temporary object left over.
async fn check_large_create(sink: &ObjectStoreSink) {
    let data = pseudo_random(20 * MIB + 3, 11);
    sink.put("large/created", data.clone(), PutMode::Create)
        .await
        .unwrap_or_else(|error| panic!("large create-only put on {}: {error}", sink.location()));
    let result = sink
        .put(
            "large/created",
            pseudo_random(20 * MIB, 12),
            PutMode::Create,
        )
        .await;
    assert!(
        matches!(result, Err(Error::AlreadyExists { .. })),
        "second large create-only put on {}: {result:?}",
        sink.location()
    );
    assert!(sink.get("large/created").await.unwrap() == data);
    let stats = sink.stats();
    assert_eq!(stats.conditional_copies, 1, "{stats:?}");
    assert_eq!(stats.multipart_uploads, 2, "{stats:?}");

    // Concurrent large creates of one key: one winner.
    let racers =
        (0..3u64).map(|i| sink.put("large/raced", pseudo_random(17 * MIB, i), PutMode::Create));
    let results = futures::future::join_all(racers).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(Error::AlreadyExists { .. })),
            "{result:?}"
        );
    }

    // Nothing else is in the store: no temporary object is left.
    let prefix = if sink.prefix().is_empty() {
        None
    } else {
        Some(StorePath::from(sink.prefix()))
    };
    let all: Vec<String> =
        futures::TryStreamExt::try_collect::<Vec<_>>(sink.store().list(prefix.as_ref()))
            .await
            .unwrap()
            .into_iter()
            .map(|meta| meta.location.to_string())
            .collect();
    assert_eq!(all.len(), 2, "objects in the store: {all:?}");
    for key in ["large/created", "large/raced"] {
        sink.delete(key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_create_only_put_on_s3s_fs() {
    let s3 = start_s3s_fs();
    check_large_create(&s3_sink(&s3, "p", s3_options(&s3))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_create_only_put_on_moto() {
    let s3 = start_moto();
    check_large_create(&s3_sink(&s3, "p", s3_options(&s3))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_create_only_put_on_azurite() {
    let azure = start_azurite();
    check_large_create(&azure_sink(&azure, "p", azure_options(&azure))).await;
}

/// Writers in different processes each have their own sink: their
/// create-only puts are arbitrated by the store's conditional write alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_only_races_between_sinks_on_azurite() {
    let azure = start_azurite();
    let writers: Vec<ObjectStoreSink> = (0..8)
        .map(|_| azure_sink(&azure, "race", azure_options(&azure)))
        .collect();
    for round in 0..5 {
        let key = format!("config-{round}");
        let results = futures::future::join_all(writers.iter().enumerate().map(|(i, sink)| {
            sink.put(
                &key,
                pseudo_random(64 * 1024 + i, i as u64),
                PutMode::Create,
            )
        }))
        .await;
        let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for result in &results {
            assert!(
                matches!(result, Ok(()) | Err(Error::AlreadyExists { .. })),
                "{result:?}"
            );
        }
        let stored = writers[0].get(&key).await.unwrap();
        assert!(stored == pseudo_random(64 * 1024 + winners[0], winners[0] as u64));
    }
}

// ---------------------------------------------------------------------------
// Errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_temporary_error() {
    let refused = RefusedPort::new();
    let options = ObjectStoreOptions {
        endpoint: Some(refused.endpoint()),
        allow_http: Some(true),
        region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        max_retries: 0,
        ..Default::default()
    };
    let sink = ObjectStoreSink::from_url("s3://bucket/p", &options).unwrap();
    let error = sink.get("x").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Sink {
                operation: "get",
                temporary: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_temporary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_permanent_error() {
    let s3 = start_s3s_fs();
    let options = ObjectStoreOptions {
        secret_access_key: Some("not-the-secret".into()),
        ..s3_options(&s3)
    };
    let sink = s3_sink(&s3, "p", options);
    let error = sink
        .put("x", Bytes::from_static(b"x"), PutMode::Overwrite)
        .await
        .unwrap_err();
    // S3 answers a bad signature with 403: "fix the credentials", never
    // "retry later".
    assert!(
        matches!(
            error,
            Error::PermissionDenied {
                operation: "put",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_temporary());
    assert_eq!(
        backup_core::FailureKind::of(&error),
        backup_core::FailureKind::PermissionDenied
    );
    assert!(!error.to_string().contains("not-the-secret"), "{error}");
}

// ---------------------------------------------------------------------------
// A repository through the library

async fn repository_round_trip(sink: ObjectStoreSink) {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("source");
    let tree = generate_tree(&source, &TreeSpec::new(11, 40));

    let sink: Arc<dyn Sink> = Arc::new(sink);
    let password = b"correct horse battery staple".to_vec();
    let repo = Repository::init(
        Arc::clone(&sink),
        InitOptions::default()
            .with_password(password.clone())
            .with_kdf(KdfParams::insecure_for_tests()),
    )
    .await
    .unwrap();
    let backup = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default().with_set("sample"),
        )
        .await
        .unwrap();
    assert_eq!(backup.manifest.stats.files, tree.files);

    // Open again, as a later process would, and restore.
    let repo = Repository::open(Arc::clone(&sink), Some(&password))
        .await
        .unwrap();
    let latest = repo.find_backup("latest", Some("sample")).await.unwrap();
    assert_eq!(latest.id, backup.id);
    let target = place.path().join("restored");
    repo.restore(&latest, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_same_tree(&source, &target.join("source"));

    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{report:?}");
    assert!(report.packs_read > 0, "{report:?}");

    // A second init at the same place is refused: the config is create-only.
    let again = Repository::init(Arc::clone(&sink), InitOptions::default()).await;
    assert!(again.is_err(), "a second init succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repository_round_trip_on_s3s_fs() {
    let s3 = start_s3s_fs();
    repository_round_trip(s3_sink(&s3, "backups/web", s3_options(&s3))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repository_round_trip_on_azurite() {
    let azure = start_azurite();
    repository_round_trip(azure_sink(&azure, "backups/web", azure_options(&azure))).await;
}

// ---------------------------------------------------------------------------
// URLs and options

#[test]
fn urls_name_the_location_and_prefix() {
    let options = ObjectStoreOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        allow_http: Some(true),
        region: Some("eu-west-1".into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("wJalrXUtnFEMI".into()),
        azure_account: Some("account".into()),
        azure_access_key: Some(AZURITE_KEY.into()),
        ..Default::default()
    };
    for (url, location, prefix) in [
        ("s3://bucket", "s3://bucket", ""),
        ("s3://bucket/a/b/", "s3://bucket/a/b", "a/b"),
        ("az://container/x", "az://container/x", "x"),
        ("azure://container/x/y", "az://container/x/y", "x/y"),
    ] {
        let sink = ObjectStoreSink::from_url(url, &options)
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        assert_eq!(sink.location(), location);
        assert_eq!(sink.prefix(), prefix);
    }
    for bad in [
        "bucket/x",
        "http://bucket/x",
        "s3://",
        "s3://bucket/a//b",
        "s3://bucket/../x",
        "s3://bucket/x?endpoint=y",
    ] {
        let result = ObjectStoreSink::from_url(bad, &options);
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "{bad}: {result:?}"
        );
    }
}

#[test]
fn invalid_options_are_refused() {
    let options = ObjectStoreOptions {
        multipart_part_size: 1024,
        ..Default::default()
    };
    let error = ObjectStoreSink::from_url("s3://bucket", &options).unwrap_err();
    assert!(error.to_string().contains("multipart_part_size"), "{error}");
    let error =
        ObjectStoreSink::new(Arc::new(InMemory::new()), "a/./b", String::new()).unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
}

#[test]
fn s3_server_side_encryption_is_configured() {
    let base = ObjectStoreOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        allow_http: Some(true),
        access_key_id: Some("id".into()),
        secret_access_key: Some("secret".into()),
        ..Default::default()
    };
    let kms = ObjectStoreOptions {
        sse_kms_key_id: Some("arn:aws:kms:us-east-1:123:key/abc".into()),
        ..base.clone()
    };
    ObjectStoreSink::from_url("s3://bucket/p", &kms).unwrap();
    // SSE-C: a base64 256-bit key is accepted, anything else refused.
    let customer_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let sse_c = ObjectStoreOptions {
        sse_customer_key_base64: Some(customer_key.into()),
        ..base.clone()
    };
    ObjectStoreSink::from_url("s3://bucket/p", &sse_c).unwrap();
    let bad = ObjectStoreOptions {
        sse_customer_key_base64: Some("not base64!".into()),
        ..base.clone()
    };
    let error = ObjectStoreSink::from_url("s3://bucket/p", &bad).unwrap_err();
    assert!(!error.to_string().contains("not base64!"), "{error}");
    let both = ObjectStoreOptions {
        sse_customer_key_base64: Some(customer_key.into()),
        ..kms
    };
    assert!(ObjectStoreSink::from_url("s3://bucket/p", &both).is_err());
}

#[test]
fn gcs_accepts_a_service_account_file() {
    let dir = tempfile::tempdir().unwrap();
    // A fake service account; "disable_oauth" keeps object_store from
    // needing a real RSA key, as in object_store's own tests.
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        r#"{
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123456789abcdef",
            "private_key": "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n",
            "client_email": "backup@test-project.iam.gserviceaccount.com",
            "disable_oauth": true,
            "gcs_base_url": "http://127.0.0.1:9"
        }"#,
    )
    .unwrap();
    let options = ObjectStoreOptions {
        gcs_service_account_path: Some(account.clone()),
        ..Default::default()
    };
    let sink = ObjectStoreSink::from_url("gs://bucket/backups/db", &options).unwrap();
    assert_eq!(sink.location(), "gs://bucket/backups/db");
    assert_eq!(sink.prefix(), "backups/db");
    assert!(
        sink.store().to_string().contains("bucket"),
        "{}",
        sink.store()
    );

    // A file that is not a service account, and a missing file, are refused
    // with a message naming the location.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    for path in [broken, dir.path().join("missing.json")] {
        let options = ObjectStoreOptions {
            gcs_service_account_path: Some(path.clone()),
            ..Default::default()
        };
        let error = ObjectStoreSink::from_url("gs://bucket/backups", &options).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument(message) if message.contains("gs://bucket/backups")),
            "{path:?}: {error:?}"
        );
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let secrets = [
        "AKIDSECRETID",
        "wJalrXUtnFEMI/K7MDENG",
        "FwoGZXIvYXdzEJr//session",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "dXNlcjpwYXNz",
        "endpoint-password",
    ];
    let options = ObjectStoreOptions {
        endpoint: Some(format!("http://user:{}@127.0.0.1:9", secrets[5])),
        allow_http: Some(true),
        access_key_id: Some(secrets[0].into()),
        secret_access_key: Some(secrets[1].into()),
        session_token: Some(secrets[2].into()),
        sse_customer_key_base64: Some(secrets[3].into()),
        azure_access_key: Some(secrets[4].into()),
        ..Default::default()
    };
    let sink = ObjectStoreSink::from_url("s3://bucket/p", &options).unwrap();
    for text in [
        format!("{options:?}"),
        format!("{options:#?}"),
        format!("{sink:?}"),
    ] {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
    let text = format!("{options:?}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(text.contains("127.0.0.1:9"), "{text}");
}

#[tokio::test]
async fn create_only_without_conditional_put_needs_the_opt_in() {
    // An S3 store with conditional put disabled cannot create atomically; the
    // sink refuses rather than silently emulating. Nothing is sent to the
    // (unreachable) endpoint before the refusal.
    let refused = RefusedPort::new();
    let options = ObjectStoreOptions {
        endpoint: Some(refused.endpoint()),
        allow_http: Some(true),
        access_key_id: Some("id".into()),
        secret_access_key: Some("secret".into()),
        s3_conditional_put: Some("disabled".into()),
        max_retries: 0,
        ..Default::default()
    };
    let sink = ObjectStoreSink::from_url("s3://bucket", &options).unwrap();
    let error = sink
        .put("k", Bytes::from_static(b"x"), PutMode::Create)
        .await
        .unwrap_err();
    assert!(is_permanent_sink_error(&error), "{error:?}");
    assert!(error.to_string().contains("conditional put"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_atomic_create_emulation_when_allowed() {
    let s3 = start_s3s_fs();
    let options = ObjectStoreOptions {
        s3_conditional_put: Some("disabled".into()),
        allow_non_atomic_create: true,
        ..s3_options(&s3)
    };
    let sink = s3_sink(&s3, "emulated", options);
    sink.put("k", Bytes::from_static(b"first"), PutMode::Create)
        .await
        .unwrap();
    let result = sink
        .put("k", Bytes::from_static(b"second"), PutMode::Create)
        .await;
    assert!(
        matches!(result, Err(Error::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(sink.get("k").await.unwrap(), "first");
}
