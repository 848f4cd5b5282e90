//! End-to-end tests of `backupctl` on remote repositories: S3 (s3s-fs),
//! Azure Blob Storage (Azurite) and SFTP (OpenSSH's sshd), each test with
//! its own server on a free port of 127.0.0.1.
//!
//! The servers come from scripts/install-test-servers.sh; a missing one
//! fails the test, nothing is skipped. Sizes are printed: run with
//! `--nocapture` to see them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use backup_testkit::backupctl::{num, Backupctl};
use backup_testkit::server::azure::{start_azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use backup_testkit::server::s3::{start_s3s_fs, S3Server};
use backup_testkit::server::sshd::{fingerprint, Sshd};
use backup_testkit::server::RefusedPort;
use backup_testkit::tree::{all_paths, assert_same_tree, disk_usage, generate_tree, TreeSpec};
use backup_testkit::MIB;
use serde_json::Value;

use crate::backupctl;

const PASSWORD: &str = "correct horse battery staple";

/// A runner for the repository `repo` of the S3 server `s3`.
fn s3_cli(s3: &S3Server) -> Backupctl {
    backupctl().s3_repo(s3, "repo")
}

/// A runner for the repository `repo` of `sshd`, logging in with the
/// client key and trusting `known_hosts`.
fn sftp_cli(sshd: &Sshd, repo: &Path, known_hosts: &Path) -> Backupctl {
    backupctl()
        .global(["--repo", &sshd.url(repo)])
        .global([
            "--ssh-key".as_ref(),
            sshd.path("client_ed25519").as_os_str(),
        ])
        .global(["--known-hosts".as_ref(), known_hosts.as_os_str()])
}

/// Init, backup, restore and compare, verify with data, back up again
/// unchanged, list: through `cli`, whose options name the repository.
/// `stored` measures the bytes the server holds.
fn round_trip(
    cli: &Backupctl,
    scratch: &Path,
    seed: u64,
    encrypted: bool,
    stored: &dyn Fn() -> u64,
) {
    let source = scratch.join("source");
    // About 300 files, and 20 MiB of incompressible data that must reach
    // the server.
    let tree = generate_tree(&source, &TreeSpec::new(seed, 260).with_big_file(20 * MIB));
    println!(
        "generated {} files, {} dirs, {} symlinks, {:.1} MiB",
        tree.files,
        tree.dirs,
        tree.symlinks,
        tree.bytes as f64 / MIB as f64,
    );
    let before = stored();

    let init = if encrypted {
        cli.run(["init", "--json"])
    } else {
        cli.run(["init", "--json", "--no-encryption"])
    };
    let init = init.ok().json();
    assert_eq!(init["encrypted"], Value::Bool(encrypted), "{init}");

    let first = cli.run(["backup".as_ref(), "--json".as_ref(), source.as_os_str()]);
    let first = first.ok().json();
    println!(
        "first backup: bytes_added {}, bytes_total {}",
        num(&first, "bytes_added"),
        num(&first, "bytes_total")
    );
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["errors"], Value::Array(vec![]), "{first}");
    assert_eq!(num(&first, "files"), tree.files, "{first}");
    assert_eq!(num(&first, "dirs"), tree.dirs, "{first}");
    assert_eq!(num(&first, "bytes_total"), tree.bytes, "{first}");
    assert!(num(&first, "bytes_added") > 0, "{first}");
    // The data went to the server: the 20 MiB of incompressible data at
    // least.
    let after = stored();
    println!(
        "the server holds {:.1} MiB more",
        (after - before) as f64 / MIB as f64
    );
    assert!(
        after >= before + 20 * MIB,
        "the server holds {before} bytes before the backup and {after} after"
    );

    let target = scratch.join("restored");
    cli.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .ok();
    assert_eq!(
        all_paths(&target)
            .into_iter()
            .filter(|p| !p.contains('/'))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["source".to_owned()])
    );
    assert_same_tree(&source, &target.join("source"));

    let verify = cli.run(["verify", "--read-data", "--json"]).ok().json();
    let report = &verify["report"];
    println!("verify --read-data: {report}");
    assert_eq!(verify["ok"], Value::Bool(true), "{verify}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{verify}");
    assert_eq!(num(report, "backups"), 1, "{verify}");
    assert!(num(report, "packs") > 0, "{verify}");
    assert_eq!(num(report, "packs_read"), num(report, "packs"), "{verify}");
    assert!(num(report, "bytes_read") >= 20 * MIB, "{verify}");

    // The unchanged tree again: next to nothing is added.
    let second = cli.run(["backup".as_ref(), "--json".as_ref(), source.as_os_str()]);
    let second = second.ok().json();
    let added = num(&second, "bytes_added");
    println!(
        "second backup: bytes_added {added} ({:.4}% of {}), files_unchanged {}",
        added as f64 * 100.0 / tree.bytes as f64,
        tree.bytes,
        num(&second, "files_unchanged")
    );
    assert_eq!(second["status"], "completed", "{second}");
    assert!(
        added * 100 < tree.bytes,
        "the unchanged tree added {added} bytes, 1% or more of {}: {second}",
        tree.bytes
    );
    assert_eq!(num(&second, "files_unchanged"), tree.files, "{second}");

    let list = cli.run(["list", "--json"]).ok().json();
    let backups = list.as_array().expect("list --json is an array");
    let ids: BTreeSet<&str> = backups.iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap()
        ]),
        "{list}"
    );
    assert!(backups.iter().all(|b| b["status"] == "completed"), "{list}");
}

#[test]
fn round_trip_through_s3() {
    let s3 = start_s3s_fs();
    let scratch = tempfile::tempdir().unwrap();
    let cli = s3_cli(&s3).env("BACKUP_PASSWORD", PASSWORD);
    let bucket = s3.bucket_dir();
    round_trip(&cli, scratch.path(), 1, true, &|| disk_usage(&bucket));
    assert!(
        bucket.join("repo/config").is_file(),
        "{}",
        s3.server.log_tail()
    );
}

#[test]
fn round_trip_through_azure() {
    let azure = start_azurite();
    let scratch = tempfile::tempdir().unwrap();
    let cli = backupctl()
        .env("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY)
        .global(["--repo", &format!("az://{}/repo", azure.container)])
        .global(["--azure-emulator", "--endpoint", &azure.endpoint()]);
    let data = azure.data_dir();
    round_trip(&cli, scratch.path(), 2, false, &|| disk_usage(&data));
}

#[test]
fn round_trip_through_sftp() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    fs::create_dir(&repo).unwrap();
    let cli = sftp_cli(&sshd, &repo, &sshd.path("known_hosts")).env("BACKUP_PASSWORD", PASSWORD);
    round_trip(&cli, scratch.path(), 3, true, &|| disk_usage(&repo));
    assert!(repo.join("config").is_file(), "{}", sshd.log());
}

#[test]
fn sftp_refuses_a_changed_host_key() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    fs::create_dir(&repo).unwrap();
    let presented = sshd.host_fingerprint();
    let other = fingerprint(&sshd.path("other_host_ed25519.pub"));
    assert_ne!(presented, other);
    let other_key = fs::read_to_string(sshd.path("other_host_ed25519.pub")).unwrap();
    let changed = sshd.write_known_hosts("changed_known_hosts", &other_key);
    let base =
        |known_hosts: &Path| sftp_cli(&sshd, &repo, known_hosts).env("BACKUP_PASSWORD", PASSWORD);

    // known_hosts holds another key for [127.0.0.1]:PORT.
    let changed_cli = base(&changed);
    for args in [&["init"][..], &["list", "--json"][..]] {
        let connections = sshd.connections();
        let out = changed_cli.run(args).fails();
        println!("{}", out.stderr.trim());
        assert!(
            out.stderr.contains(&other),
            "the expected fingerprint {other} is not named:\n{}",
            out.describe()
        );
        assert!(
            out.stderr.contains(&presented),
            "the presented fingerprint {presented} is not named:\n{}",
            out.describe()
        );
        // A changed key is not a network failure: no retry.
        assert_eq!(
            sshd.connections(),
            connections + 1,
            "one connection, refused, not retried:\n{}",
            sshd.log()
        );
    }

    // A pinned fingerprint that is not the server's.
    let pinned_cli = base(&sshd.path("known_hosts")).global(["--host-key-fingerprint", &other]);
    let out = pinned_cli.run(["init"]).fails();
    println!("{}", out.stderr.trim());
    assert!(
        out.stderr.contains(&other) && out.stderr.contains(&presented),
        "both fingerprints ({other}, {presented}) should be named:\n{}",
        out.describe()
    );

    assert_eq!(
        all_paths(&repo),
        BTreeSet::new(),
        "something was written to the repository of a refused server"
    );

    // The same server is accepted with its own key, pinned (with an empty
    // known_hosts) or known: the refusals were about the key.
    let empty = sshd.path("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    base(&empty)
        .global(["--host-key-fingerprint", &presented])
        .run(["init"])
        .ok();
    assert!(repo.join("config").is_file(), "{}", sshd.log());
    let list = base(&sshd.path("known_hosts"))
        .run(["list", "--json"])
        .ok()
        .json();
    assert_eq!(list, Value::Array(vec![]));
}

#[test]
fn unreachable_s3_fails_clearly() {
    let refused = RefusedPort::new();
    let (port, endpoint) = (refused.port(), refused.endpoint());
    let cli = backupctl()
        .env("AWS_ACCESS_KEY_ID", "test-access-key")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-key")
        .env("AWS_REGION", "us-east-1")
        .env("BACKUP_PASSWORD", PASSWORD)
        .global(["--repo", "s3://bucket/repo"])
        .global(["--endpoint", &endpoint, "--allow-http"]);
    for args in [&["init"][..], &["list"][..]] {
        // object_store retries connection failures a bounded number of
        // times (backup-sinks' defaults; the CLI has no option to change
        // them), then the command fails by itself.
        let out = cli.run(args).fails();
        println!("{}", out.stderr.trim());
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}")),
            "the endpoint is not named:\n{}",
            out.describe()
        );
        assert!(
            out.stderr.contains("Connection refused") || out.stderr.contains("connect"),
            "the connection failure is not named:\n{}",
            out.describe()
        );
    }
}

/// `init` of a remote repository must not create a local directory named
/// after the URL (`./s3:/bucket/repo`, `./sftp:/user@host:port/...`).
#[test]
fn remote_init_creates_nothing_in_the_working_directory() {
    let s3 = start_s3s_fs();
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("sftp-repo");
    fs::create_dir(&repo).unwrap();
    let s3_cli = s3_cli(&s3);
    let sftp_cli = sftp_cli(&sshd, &repo, &sshd.path("known_hosts"));
    for cli in [&s3_cli, &sftp_cli] {
        cli.run(["init", "--no-encryption"]).ok();
    }
    assert!(s3.bucket_dir().join("repo/config").is_file());
    assert!(repo.join("config").is_file());
    assert_eq!(
        (s3_cli.litter(), sftp_cli.litter()),
        (BTreeSet::new(), BTreeSet::new()),
        "`backupctl init` created these in its working directory (s3://, sftp://)"
    );
}

/// `init` of an sftp:// repository whose directory does not exist creates
/// it and its parents on the server, as restic does; any other command on
/// a missing directory fails, naming it, and creates nothing.
#[test]
fn sftp_init_creates_a_missing_nested_directory() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = sshd.path("known_hosts");

    let source = scratch.path().join("source");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("file.txt"), b"on the server").unwrap();
    let source_arg = source.to_str().unwrap();

    let missing = scratch.path().join("not/there");
    for args in [&["list", "--json"][..], &["backup", source_arg][..]] {
        let out = sftp_cli(&sshd, &missing, &known_hosts).run(args).fails();
        println!("{}", out.stderr.trim());
        assert!(
            out.stderr.contains("does not exist")
                && out.stderr.contains(&missing.display().to_string()),
            "the missing directory is not named:\n{}",
            out.describe()
        );
        // No option the command line does not have.
        assert!(
            !out.stderr.contains("SftpOptions") && !out.stderr.contains("create_base_dir"),
            "{}",
            out.describe()
        );
        assert!(!scratch.path().join("not").exists(), "{}", sshd.log());
    }

    let repo = scratch.path().join("a/b/c/repo");
    let cli = sftp_cli(&sshd, &repo, &known_hosts);
    cli.run(["init", "--no-encryption"]).ok();
    assert!(repo.join("config").is_file(), "{}", sshd.log());
    let summary = cli.backup([source_arg]);
    assert_eq!(num(&summary, "files"), 1, "{summary}");
    assert_eq!(cli.list().len(), 1);
    // A second init finds the repository there.
    cli.run(["init", "--no-encryption"]).fails();
    assert_eq!(cli.litter(), BTreeSet::new());
}
