//! `backupctl diff`, `find` and `stats` on local repositories: the exact
//! lines they print, and their JSON documents.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use backup_testkit::backupctl::num;
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::{generate_tree, TreeSpec};
use serde_json::Value;

use crate::Repo;

/// Sets a path's modification time to `seconds` after the epoch.
fn set_mtime(path: &Path, seconds: u64) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        .unwrap();
}

/// The id of a backup summary.
fn id(summary: &Value) -> String {
    summary["id"].as_str().unwrap().to_string()
}

#[test]
fn diff_prints_restic_style_lines_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    fs::create_dir_all(source.join("sub")).unwrap();
    fs::write(source.join("sub/same.txt"), random_bytes(1, 2000)).unwrap();
    fs::write(source.join("change.txt"), random_bytes(2, 3000)).unwrap();
    fs::write(source.join("chmod.txt"), random_bytes(3, 1000)).unwrap();
    fs::write(source.join("remove.txt"), random_bytes(4, 4096)).unwrap();
    fs::set_permissions(source.join("chmod.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    set_mtime(&source, 1_000_000);
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init();
    let first = repo.backup([&source]);

    fs::write(source.join("change.txt"), random_bytes(5, 3000)).unwrap();
    fs::set_permissions(source.join("chmod.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(source.join("remove.txt")).unwrap();
    fs::write(source.join("added.txt"), random_bytes(6, 2048)).unwrap();
    set_mtime(&source, 2_000_000);
    let second = repo.backup([&source]);

    let (a, b) = (id(&first), id(&second));
    let out = repo.run(["diff", &a[..12], "latest"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = format!("comparing backup {} to {}:", &a[..8], &b[..8]);
    assert_eq!(
        lines,
        [
            header.as_str(),
            "",
            "U    /source/",
            "+    /source/added.txt",
            "M    /source/change.txt",
            "U    /source/chmod.txt",
            "-    /source/remove.txt",
            "",
            "Files:           1 new,     1 removed,     2 changed",
            "Dirs:            0 new,     0 removed,     1 changed",
            "Others:          0 new,     0 removed,     0 changed",
            "Data chunks:     2 new,     2 removed",
            "Tree chunks:     2 new,     2 removed",
            lines[13],
            lines[14],
        ],
        "{}",
        out.describe()
    );
    // Content and listings together, in KiB.
    assert!(
        lines[13].starts_with("  Added:   ") && lines[13].ends_with(" KiB"),
        "{}",
        lines[13]
    );
    assert!(
        lines[14].starts_with("  Removed: ") && lines[14].ends_with(" KiB"),
        "{}",
        lines[14]
    );

    let json = repo.run(["diff", &a, &b, "--json"]).ok().json();
    assert_eq!(json["from"], a.as_str());
    assert_eq!(json["to"], b.as_str());
    let changes: Vec<(String, String, String)> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["change"].as_str().unwrap().to_string(),
                entry["path"].as_str().unwrap().to_string(),
                entry["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("metadata", "source", "dir"),
        ("added", "source/added.txt", "file"),
        ("modified", "source/change.txt", "file"),
        ("metadata", "source/chmod.txt", "file"),
        ("removed", "source/remove.txt", "file"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(c, p, t)| (c.to_string(), p.to_string(), t.to_string()))
        .collect();
    assert_eq!(changes, expected);
    let stats = &json["stats"];
    assert_eq!(num(stats, "bytes_added"), 2048 + 3000);
    assert_eq!(num(stats, "bytes_removed"), 4096 + 3000);
    assert_eq!(num(stats, "files_changed"), 2);

    // Nothing differs between a backup and itself.
    let same = repo.run(["diff", &b, &b]).ok();
    assert!(
        same.stdout.lines().all(|line| !line.contains("    /")),
        "{}",
        same.describe()
    );
    // An unknown backup is an error.
    repo.run(["diff", &a, "ffffffffff"]).fails();
}

#[test]
fn find_lists_each_backup_with_a_match_and_its_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    fs::create_dir_all(source.join("logs")).unwrap();
    fs::write(source.join("notes.txt"), b"notes").unwrap();
    fs::write(source.join("logs/app.log"), b"first run\n").unwrap();
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init();
    let first = repo.backup(["--set", "web", source.to_str().unwrap()]);
    fs::write(source.join("logs/app.log"), b"first run\nsecond run\n").unwrap();
    fs::set_permissions(
        source.join("logs/app.log"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let second = repo.backup(["--set", "web", source.to_str().unwrap()]);
    fs::remove_file(source.join("logs/app.log")).unwrap();
    let third = repo.backup(["--set", "web", source.to_str().unwrap()]);

    let out = repo.run(["find", "*.LOG", "--ignore-case"]).ok();
    let listed = repo.list();
    let time_of = |summary: &Value| {
        let backup = listed.iter().find(|b| b["id"] == summary["id"]).unwrap();
        chrono::DateTime::parse_from_rfc3339(backup["time"].as_str().unwrap())
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    };
    let heading = |summary: &Value| {
        format!(
            "Found matching entries in backup {} from {} (set web)",
            &id(summary)[..8],
            time_of(summary)
        )
    };
    let expected = [
        heading(&first),
        "/source/logs/app.log".to_string(),
        String::new(),
        heading(&second),
        "/source/logs/app.log".to_string(),
    ];
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        expected,
        "{}",
        out.describe()
    );

    // --long adds type, mode, size and time; --backup narrows the search.
    let long = repo
        .run(["find", "app.log", "--long", "--backup", &id(&second)[..10]])
        .ok();
    let lines: Vec<&str> = long.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", long.describe());
    assert_eq!(lines[0], heading(&second));
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(fields[0], "-0644", "{}", lines[1]);
    assert_eq!(fields[1], "21", "{}", lines[1]);
    assert_eq!(fields[4], "/source/logs/app.log", "{}", lines[1]);

    // A path pattern, as one JSON document.
    let json = repo
        .run(["find", "/source/*", "--json", "--set", "web"])
        .ok()
        .json();
    let backups = json["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 3);
    assert_eq!(backups[2]["id"], third["id"]);
    assert_eq!(backups[2]["set"], "web");
    let paths: Vec<&str> = backups[2]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["source/logs", "source/notes.txt"]);

    // Nothing found prints nothing; a set with no backups finds nothing.
    assert_eq!(repo.run(["find", "*.pdf"]).ok().stdout, "");
    assert_eq!(repo.run(["find", "*.log", "--set", "db"]).ok().stdout, "");
    repo.run(["find"]).fails();
}

#[test]
fn stats_counts_restore_size_and_raw_data_of_identical_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let tree = generate_tree(&source, &TreeSpec::new(7, 300).with_big_file(2 << 20));
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init();
    let first = repo.backup([&source]);
    let second = repo.backup([&source]);
    assert_eq!(num(&second, "bytes_added"), 0, "{second}");

    let restore = repo.run(["stats", "--json", &id(&first)]).ok().json();
    assert_eq!(restore["mode"], "restore-size");
    assert_eq!(num(&restore, "backups"), 1);
    assert_eq!(num(&restore, "files"), tree.files);
    assert_eq!(num(&restore, "restore_size"), tree.bytes);
    assert!(restore.get("raw_data").is_none(), "{restore}");

    let text = repo.run(["stats"]).ok().stdout;
    assert!(text.starts_with("Stats in restore-size mode:\n"), "{text}");
    assert!(text.contains("  Backups processed:  2\n"), "{text}");
    assert!(
        text.contains(&format!("   Total file count:  {}\n", 2 * tree.files)),
        "{text}"
    );
    assert!(
        text.contains(&format!(" ({} bytes)\n", 2 * tree.bytes)),
        "{text}"
    );

    let one = repo
        .run(["stats", "--mode", "raw-data", "--json", "latest"])
        .ok()
        .json();
    let both = repo
        .run(["stats", "--mode", "raw-data", "--json"])
        .ok()
        .json();
    println!("one: {one}\nboth: {both}");
    // The second backup adds no chunk: the distinct chunks are the same.
    assert_eq!(one["raw_data"], both["raw_data"]);
    assert_eq!(num(&both, "restore_size"), 2 * tree.bytes);
    let ratio_one = one["deduplication_ratio"].as_f64().unwrap();
    let ratio_both = both["deduplication_ratio"].as_f64().unwrap();
    assert!((1.0..1.2).contains(&ratio_one), "{one}");
    assert!((ratio_both - 2.0 * ratio_one).abs() < 1e-9, "{both}");
    assert!(both["space_saving"].as_f64().unwrap() > 0.45, "{both}");

    let raw_text = repo.run(["stats", "--mode", "raw-data"]).ok().stdout;
    assert!(
        raw_text.starts_with("Stats in raw-data mode:\n"),
        "{raw_text}"
    );
    assert!(
        raw_text.contains(&format!("     Deduplication ratio:  {ratio_both:.2}x\n")),
        "{raw_text}"
    );
    assert!(
        raw_text.contains("       Compression ratio:  "),
        "{raw_text}"
    );
    assert!(
        raw_text.contains("            Space saving:  "),
        "{raw_text}"
    );
}
