//! The SFTP sink against a real OpenSSH server on 127.0.0.1.
//!
//! Every test starts its own `sshd` (backup-testkit's); they fail, never
//! skip, when OpenSSH is not installed.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::DirectorySnapshotter;
use backup_core::{
    BackupOptions, Error, InitOptions, KdfParams, PutMode, Repository, RestoreOptions, Sink,
    SinkExt,
};
use backup_sinks::sftp::{SftpOptions, SftpSink};
use backup_testkit::repo::verify_data;
use backup_testkit::server::sshd::{
    current_user, fingerprint, running_as_root, Sshd as Server, Tweaks, RSA_PASSPHRASE,
};
use backup_testkit::tree::{assert_same_tree, find_files_named, generate_tree, TreeSpec};
use bytes::Bytes;

use crate::{error_text, is_permanent_sink_error};

/// Options that log in to `server` with its ed25519 client key and trust
/// its `known_hosts`.
fn options(server: &Server) -> SftpOptions {
    let mut options = SftpOptions::default()
        .with_private_key(server.path("client_ed25519"))
        .with_known_hosts(server.path("known_hosts"))
        .with_connect_timeout(Duration::from_secs(20));
    options.request_timeout = Duration::from_secs(30);
    options
}

/// The temporary files of interrupted writes below `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    find_files_named(dir, ".tmp-")
}

/// Connects, panicking with the server's log on failure.
async fn connect(server: &Server, url: &str, options: SftpOptions) -> SftpSink {
    match SftpSink::connect(url, options).await {
        Ok(sink) => sink,
        Err(error) => panic!(
            "connecting to {url} failed: {error}\nsshd log:\n{}",
            server.log()
        ),
    }
}

/// Connects expecting failure; returns the error's full text.
async fn connect_error(url: &str, options: SftpOptions) -> (Error, String) {
    match SftpSink::connect(url, options).await {
        Ok(sink) => panic!("connecting to {url} succeeded: {sink:?}"),
        Err(error) => {
            let text = error_text(&error);
            (error, text)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conforms_to_the_sink_contract() {
    let server = Server::start();
    let sink = connect(&server, &server.data_url(), options(&server)).await;
    backup_core::conformance::run_all(&sink).await;
    assert_eq!(temp_files(&server.data()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_key_with_passphrase() {
    let server = Server::start();
    let options = options(&server)
        .with_private_key(server.path("client_rsa"))
        .with_passphrase(RSA_PASSPHRASE);
    let sink = connect(&server, &server.data_url(), options.clone()).await;
    sink.put("rsa/object", Bytes::from("via RSA"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(sink.get("rsa/object").await.unwrap(), "via RSA");
    assert_eq!(
        fs::read(server.data().join("rsa/object")).unwrap(),
        b"via RSA"
    );
    assert!(matches!(
        sink.put("rsa/object", Bytes::from("again"), PutMode::Create)
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    // Neither the passphrase nor the key material is ever printed.
    let shown = format!("{sink:?} {options:?}");
    assert!(!shown.contains(RSA_PASSPHRASE), "{shown}");
    let private_key = fs::read_to_string(server.path("client_rsa")).unwrap();
    for line in private_key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line), "Debug shows key material: {shown}");
    }

    // A missing or wrong passphrase is reported as such.
    let mut no_passphrase = options.clone();
    no_passphrase.passphrase = None;
    let (error, text) = connect_error(&server.data_url(), no_passphrase).await;
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    assert!(
        text.contains("passphrase") && text.contains("client_rsa"),
        "{text}"
    );
    let wrong = options.with_passphrase("not the passphrase");
    let (_, text) = connect_error(&server.data_url(), wrong).await;
    assert!(
        text.contains("wrong passphrase") && text.contains("client_rsa"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_keys_are_verified() {
    let server = Server::start();
    let url = server.data_url();
    let presented = server.host_fingerprint();
    let other = fingerprint(&server.path("other_host_ed25519.pub"));
    assert_ne!(presented, other);

    // known_hosts with another key for this host.
    let other_key = fs::read_to_string(server.path("other_host_ed25519.pub")).unwrap();
    let wrong = server.write_known_hosts("wrong_known_hosts", &other_key);
    let (error, text) = connect_error(&url, options(&server).with_known_hosts(&wrong)).await;
    assert!(
        matches!(
            error,
            Error::Sink {
                operation: "connect",
                temporary: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(text.contains("MISMATCH"), "{text}");
    assert!(
        text.contains(&other),
        "expected fingerprint missing: {text}"
    );
    assert!(
        text.contains(&presented),
        "presented fingerprint missing: {text}"
    );

    // Unknown host: an empty known_hosts, and a missing one.
    let empty = server.path("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    for known_hosts in [empty.clone(), server.path("no_such_known_hosts")] {
        let (error, text) =
            connect_error(&url, options(&server).with_known_hosts(&known_hosts)).await;
        assert!(is_permanent_sink_error(&error), "{error:?}");
        assert!(text.contains("not in known_hosts"), "{text}");
        assert!(text.contains(&presented), "{text}");
        let advice = format!(
            "ssh-keyscan -p {} 127.0.0.1 >> {}",
            server.port(),
            known_hosts.display()
        );
        assert!(text.contains(&advice), "{text}");
    }
    // Nothing was learnt from the refused connection.
    assert_eq!(fs::read_to_string(&empty).unwrap(), "");

    // Pinned fingerprints.
    let pinned = connect(
        &server,
        &url,
        options(&server)
            .with_known_hosts(&empty)
            .with_host_key_fingerprint(&presented),
    )
    .await;
    pinned
        .put("pinned", Bytes::from("ok"), PutMode::Overwrite)
        .await
        .unwrap();
    let (error, text) =
        connect_error(&url, options(&server).with_host_key_fingerprint(&other)).await;
    assert!(is_permanent_sink_error(&error), "{error:?}");
    assert!(text.contains(&other) && text.contains(&presented), "{text}");
    let (error, _) = connect_error(
        &url,
        options(&server).with_host_key_fingerprint("MD5:aa:bb"),
    )
    .await;
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");

    // A server with several host keys presents the one known_hosts has,
    // here its RSA key rather than the ed25519 key it prefers.
    let rsa_key = fs::read_to_string(server.path("host_rsa.pub")).unwrap();
    let rsa_only = server.write_known_hosts("rsa_known_hosts", &rsa_key);
    connect(&server, &url, options(&server).with_known_hosts(&rsa_only)).await;

    // Hashed known_hosts entries (ssh-keygen -H) are understood.
    let hashed = server.path("known_hosts");
    let output = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let contents = fs::read_to_string(&hashed).unwrap();
    assert!(
        contents.contains("|1|") && !contents.contains("127.0.0.1"),
        "{contents}"
    );
    let sink = connect(&server, &url, options(&server)).await;
    assert_eq!(sink.get("pinned").await.unwrap(), "ok");
    let hashed_wrong = server.path("hashed_wrong");
    fs::copy(&wrong, &hashed_wrong).unwrap();
    assert!(std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed_wrong)
        .output()
        .unwrap()
        .status
        .success());
    let (_, text) = connect_error(&url, options(&server).with_known_hosts(&hashed_wrong)).await;
    assert!(text.contains(&other) && text.contains(&presented), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_key_is_a_clear_error() {
    let server = Server::start();
    let stranger = server.path("stranger_ed25519");
    let (error, text) = connect_error(
        &server.data_url(),
        options(&server).with_private_key(&stranger),
    )
    .await;
    assert!(
        matches!(
            error,
            Error::Unauthenticated {
                operation: "connect",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_temporary());
    assert!(text.contains("authentication refused"), "{text}");
    assert!(text.contains(&format!("{:?}", server.user)), "{text}");
    assert!(text.contains(&stranger.display().to_string()), "{text}");
    assert!(
        text.contains(&fingerprint(&server.path("stranger_ed25519.pub"))),
        "{text}"
    );

    // A missing key file names the path.
    let (_, text) = connect_error(
        &server.data_url(),
        options(&server).with_private_key(server.path("no_such_key")),
    )
    .await;
    assert!(text.contains("no_such_key"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_base_directory() {
    let server = Server::start();
    let missing = server.data().join("not/yet");
    let url = server.url(&missing);
    // Checked at connect time.
    let (error, text) = connect_error(&url, options(&server)).await;
    assert!(is_permanent_sink_error(&error), "{error:?}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(!missing.exists());

    // Created on request.
    let sink = connect(&server, &url, options(&server).with_create_base_dir(true)).await;
    assert!(missing.is_dir());
    sink.put("k", Bytes::from("v"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(fs::read(missing.join("k")).unwrap(), b"v");

    // A base directory that disappears later is named in the error, and
    // never silently re-created.
    fs::remove_dir_all(&missing).unwrap();
    let error = sink
        .put("a/b", Bytes::from("v"), PutMode::Overwrite)
        .await
        .unwrap_err();
    let text = error_text(&error);
    assert!(
        text.contains("base directory") && text.contains("no longer exists"),
        "{text}"
    );
    let error = sink.list("").await.unwrap_err();
    assert!(error_text(&error).contains("no longer exists"), "{error:?}");
    assert!(!missing.exists());

    // A file in the way of a key's directory.
    let base = server.data();
    let sink = connect(&server, &server.data_url(), options(&server)).await;
    sink.put("file", Bytes::from("x"), PutMode::Create)
        .await
        .unwrap();
    let error = sink
        .put("file/below", Bytes::from("v"), PutMode::Overwrite)
        .await
        .unwrap_err();
    let text = error_text(&error);
    assert!(text.contains("in the way"), "{text}");
    assert_eq!(fs::read(base.join("file")).unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread")]
async fn permission_denied_names_the_path() {
    // Root bypasses permission checks, so as root the test logs in as
    // `nobody`, who may not write to root's directories; otherwise it logs
    // in as the current user and takes write permission away.
    let as_root = running_as_root();
    let user = if as_root {
        "nobody".to_owned()
    } else {
        current_user()
    };
    let server = Server::start_with(user, Tweaks::default());
    let locked = server.data().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::write(locked.join("existing"), "x").unwrap();
    let secret = server.data().join("secret");
    fs::write(&secret, "for root only").unwrap();
    use std::os::unix::fs::PermissionsExt;
    if as_root {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    } else {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    }

    let sink = connect(&server, &server.url(&locked), options(&server)).await;
    for key in ["object", "sub/dir/object"] {
        let error = sink
            .put(key, Bytes::from("data"), PutMode::Overwrite)
            .await
            .unwrap_err();
        let text = error_text(&error);
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
        assert!(text.contains("permission denied"), "{text}");
        assert!(text.contains(&locked.display().to_string()), "{text}");
        assert!(text.contains(&format!("{:?}", server.user)), "{text}");
    }
    // Reads still work.
    assert_eq!(sink.get("existing").await.unwrap(), "x");

    let sink = connect(&server, &server.data_url(), options(&server)).await;
    let error = sink.get("secret").await.unwrap_err();
    let text = error_text(&error);
    assert!(
        matches!(
            error,
            Error::PermissionDenied {
                operation: "get",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains(&secret.display().to_string()), "{text}");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_is_reported_with_the_path() {
    // The server may write files of at most 64 KiB: a larger write fails
    // the way it fails on a full disk.
    let server = Server::start_with(
        current_user(),
        Tweaks {
            file_size_limit_kib: Some(64),
        },
    );
    let sink = connect(&server, &server.data_url(), options(&server)).await;
    sink.put("small", Bytes::from(vec![1; 1000]), PutMode::Create)
        .await
        .unwrap();
    let error = sink
        .put("packs/big", Bytes::from(vec![7; 1 << 20]), PutMode::Create)
        .await
        .unwrap_err();
    let text = error_text(&error);
    assert!(
        matches!(
            error,
            Error::Sink {
                operation: "put",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(text.contains("storage full or write failed"), "{text}");
    assert!(
        text.contains(&server.data().join("packs/big").display().to_string()),
        "{text}"
    );
    // Nothing half-written is visible, and the temporary file is gone.
    assert!(matches!(
        sink.head("packs/big").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(temp_files(&server.data()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_after_the_server_restarts() {
    let server = Arc::new(Server::start());
    let sink = connect(
        &server,
        &server.data_url(),
        options(&server).with_max_retries(6),
    )
    .await;
    sink.put("before", Bytes::from("one"), PutMode::Create)
        .await
        .unwrap();

    // The server crashes and comes back: the next operation reconnects.
    server.restart();
    assert_eq!(sink.get("before").await.unwrap(), "one");
    sink.put("after", Bytes::from("two"), PutMode::Create)
        .await
        .unwrap();

    // The server is down when operations start and comes back a little
    // later: they wait and retry.
    server.kill();
    let reviver = {
        let server = server.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            server.relaunch();
        })
    };
    let (got, put, listed) = tokio::join!(
        sink.get("after"),
        sink.put("during", Bytes::from("three"), PutMode::Create),
        sink.list(""),
    );
    reviver.join().unwrap();
    assert_eq!(got.unwrap(), "two");
    put.unwrap();
    let listed: Vec<String> = listed.unwrap().into_iter().map(|o| o.key).collect();
    assert!(
        listed.contains(&"before".to_owned()) && listed.contains(&"after".to_owned()),
        "{listed:?}"
    );
    assert_eq!(sink.get("during").await.unwrap(), "three");

    // Reconnections verify the host key again: an impostor on the same
    // address is refused.
    let checked = connect(&server, &server.data_url(), options(&server)).await;
    server.restart_with_other_host_key();
    let error = checked.get("before").await.unwrap_err();
    let text = error_text(&error);
    assert!(
        text.contains("MISMATCH")
            && text.contains(&fingerprint(&server.path("other_host_ed25519.pub"))),
        "{text}"
    );
    assert!(!error.is_temporary(), "{error:?}");
    // Trust the new key from here on.
    let new_key = fs::read_to_string(server.path("host_ed25519.pub")).unwrap();
    server.write_known_hosts("known_hosts", &new_key);

    // With no retries left the error says the connection was lost, and it
    // is temporary.
    let impatient = connect(
        &server,
        &server.data_url(),
        options(&server).with_max_retries(0),
    )
    .await;
    server.kill();
    let error = impatient.get("before").await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    server.relaunch();
    assert_eq!(impatient.get("before").await.unwrap(), "one");
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_round_trip() {
    let server = Server::start();
    let sink: Arc<dyn Sink> = Arc::new(
        connect(
            &server,
            &server.url(&server.data().join("repo")),
            options(&server).with_create_base_dir(true),
        )
        .await,
    );

    // A hostile tree with a few MiB of incompressible data, so that
    // several chunks and packs are written.
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("source");
    generate_tree(
        &source,
        &TreeSpec::new(12, 30).with_big_file(3 * 1024 * 1024 + 17),
    );

    let repo = Repository::init(
        sink.clone(),
        InitOptions::default()
            .with_password(b"repository password".to_vec())
            .with_kdf(KdfParams::insecure_for_tests()),
    )
    .await
    .unwrap();
    repo.backup(
        &DirectorySnapshotter::new(vec![source.clone()]),
        BackupOptions::default(),
    )
    .await
    .unwrap();

    // Reopen through a fresh connection, as another process would.
    let reopened = Repository::open(
        Arc::new(
            connect(
                &server,
                &server.url(&server.data().join("repo")),
                options(&server),
            )
            .await,
        ),
        Some(b"repository password"),
    )
    .await
    .unwrap();
    let latest = reopened.find_backup("latest", None).await.unwrap();
    let restored = place.path().join("restored");
    reopened
        .restore(&latest, &restored, &RestoreOptions::default())
        .await
        .unwrap();
    assert_same_tree(&source, &restored.join("source"));
    let report = verify_data(&reopened).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(temp_files(&server.data()), Vec::<String>::new());
}
