//! `backupctl copy`: backups of a local repository copied into an S3
//! repository (s3s-fs) with another password, restored from there byte for
//! byte; copying again uploads nothing.

use std::fs;

use backup_testkit::backupctl::num;
use backup_testkit::repo::packs;
use backup_testkit::server::s3::start_s3s_fs;
use backup_testkit::tree::{assert_same_tree, generate_tree, TreeSpec};
use backup_testkit::MIB;
use serde_json::Value;

use crate::{backupctl, Repo};

const SOURCE_PASSWORD: &str = "the source's password";
const DESTINATION_PASSWORD: &str = "the destination's password";

/// The ids of a list of copied or skipped backups in `copy --json`.
fn sources(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {report}"))
        .iter()
        .map(|backup| backup["source"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn copy_into_s3_under_another_password_restores_and_copies_once() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let tree = generate_tree(&source, &TreeSpec::new(17, 200).with_big_file(6 * MIB));
    let local = Repo::new(scratch.path().join("local"), Some(SOURCE_PASSWORD));
    local.init();
    let first = local.backup([source.as_os_str()]);
    fs::write(source.join("added.txt"), b"written after the first backup").unwrap();
    let second = local.backup([source.as_os_str()]);

    let s3 = start_s3s_fs();
    let remote = backupctl()
        .s3_repo(&s3, "repo")
        .env("BACKUP_PASSWORD", DESTINATION_PASSWORD);
    remote.init(true);
    let stored = s3.bucket_dir().join("repo");
    let password_file = scratch.path().join("source-password");
    fs::write(&password_file, format!("{SOURCE_PASSWORD}\n")).unwrap();
    let from = [
        "--from-repo".as_ref(),
        local.path.as_os_str(),
        "--from-password-file".as_ref(),
        password_file.as_os_str(),
    ];

    // The source's password is its own: without it, nothing is copied.
    let refused = remote
        .run([
            "copy".as_ref(),
            "--from-repo".as_ref(),
            local.path.as_os_str(),
        ])
        .fails();
    assert!(
        refused.stderr.contains("--from-password-file"),
        "{}",
        refused.describe()
    );

    let mut args = vec!["copy".as_ref(), "--json".as_ref()];
    args.extend(from);
    let report = remote.run(&args).ok().json();
    println!(
        "first copy: bytes_read {}, bytes_uploaded {}",
        num(&report, "bytes_read"),
        num(&report, "bytes_uploaded")
    );
    let originals = [
        first["id"].as_str().unwrap().to_owned(),
        second["id"].as_str().unwrap().to_owned(),
    ];
    assert_eq!(sources(&report, "copied"), originals, "{report}");
    assert_eq!(
        sources(&report, "skipped"),
        Vec::<String>::new(),
        "{report}"
    );
    assert!(num(&report, "bytes_read") >= tree.bytes, "{report}");
    assert!(num(&report, "bytes_uploaded") >= 6 * MIB, "{report}");
    assert_eq!(
        num(&report, "bytes_uploaded"),
        packs(&stored).values().sum::<u64>(),
        "{report}"
    );

    // Restored from S3 byte for byte, and recorded as copies.
    let target = scratch.path().join("restored");
    remote.restore("latest", &target, &[]).ok();
    assert_same_tree(&source, &target.join("source"));
    let listed = remote.list();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let copy = &report["copied"][1]["destination"];
    let shown = remote
        .run(["show", copy.as_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(shown["facts"]["copied_from"], second["id"], "{shown}");
    assert_eq!(shown["set"], second["set"], "{shown}");
    let verify = remote.run(["verify", "--read-data", "--json"]).ok().json();
    assert_eq!(verify["ok"], Value::Bool(true), "{verify}");

    // Again, the password from the environment this time: nothing to do.
    let packs_before = packs(&stored);
    let again = remote
        .clone()
        .env("BACKUP_FROM_PASSWORD", SOURCE_PASSWORD)
        .run([
            "copy".as_ref(),
            "--json".as_ref(),
            "--from-repo".as_ref(),
            local.path.as_os_str(),
        ])
        .ok()
        .json();
    println!(
        "second copy: bytes_read {}, bytes_uploaded {}",
        num(&again, "bytes_read"),
        num(&again, "bytes_uploaded")
    );
    assert_eq!(sources(&again, "copied"), Vec::<String>::new(), "{again}");
    assert_eq!(sources(&again, "skipped"), originals, "{again}");
    assert_eq!(num(&again, "bytes_uploaded"), 0, "{again}");
    assert_eq!(num(&again, "bytes_read"), 0, "{again}");
    assert_eq!(packs(&stored), packs_before);
    assert_eq!(remote.list().len(), 2);
}
