//! No password, key or credential in `backupctl`'s output or logs, at the
//! most verbose log level, on success and on every kind of failure.

use std::fs;

use backup_testkit::backupctl::Out;
use backup_testkit::server::s3::start_s3s_fs;
use backup_testkit::server::RefusedPort;

use crate::backupctl;

const PASSWORD: &str = "Correct-Horse-Battery-Staple-42";

fn assert_clean(out: &Out, secrets: &[&str]) {
    for secret in secrets {
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.contains(secret),
                "backupctl {} printed a secret on {stream}",
                out.args
            );
        }
    }
}

#[test]
fn no_secret_in_output_or_trace_logs() {
    let s3 = start_s3s_fs();
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("file.txt"), b"some data\n").unwrap();
    let password_file = scratch.path().join("password");
    fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let secrets = [PASSWORD, s3.secret_key.as_str()];
    let repo = format!("s3://{}/repo", s3.bucket);
    let base = backupctl()
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("BACKUP_LOG", "trace")
        .global(["--repo", &repo]);
    let cli = base.clone().env("BACKUP_PASSWORD", PASSWORD).global([
        "--endpoint",
        &s3.endpoint(),
        "--allow-http",
    ]);
    let target = scratch.path().join("restored");
    let mut runs = vec![
        cli.run(["init"]),
        cli.run(["backup".as_ref(), source.as_os_str()]),
        cli.run([
            "backup".as_ref(),
            "--json".as_ref(),
            "--progress".as_ref(),
            "json".as_ref(),
            source.as_os_str(),
        ]),
        cli.run(["list", "--json"]),
        cli.run(["verify", "--read-data"]),
        cli.run([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ]),
    ];
    for out in &runs[..] {
        assert_eq!(out.code, Some(0), "{}: {}", out.args, out.stderr);
    }
    // Failures: wrong password (from a file), no password, a wrong secret
    // key, an unreachable endpoint, a repository that does not exist.
    let wrong = base
        .clone()
        .env("BACKUP_PASSWORD", "wrong-password-value")
        .global(["--endpoint", &s3.endpoint(), "--allow-http"]);
    let out = wrong.run(["list"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("wrong-password-value"),
        "{}",
        out.stderr
    );
    runs.push(out);
    let from_file = base
        .clone()
        .global(["--endpoint", &s3.endpoint(), "--allow-http"])
        .global(["--password-file".as_ref(), password_file.as_os_str()]);
    let out = from_file.run(["list"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    runs.push(out);
    let bad_secret = backupctl()
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            format!("{}-but-wrong", s3.secret_key),
        )
        .env("AWS_REGION", "us-east-1")
        .env("BACKUP_LOG", "trace")
        .env("BACKUP_PASSWORD", PASSWORD)
        .global(["--repo", &repo])
        .global(["--endpoint", &s3.endpoint(), "--allow-http"]);
    let out = bad_secret.run(["list"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    runs.push(out);
    let refused = RefusedPort::new();
    let unreachable = base.clone().env("BACKUP_PASSWORD", PASSWORD).global([
        "--endpoint",
        &refused.endpoint(),
        "--allow-http",
    ]);
    let out = unreachable.run(["list"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    runs.push(out);
    let missing = backupctl()
        .s3_repo(&s3, "nothing-here")
        .env("BACKUP_LOG", "trace")
        .env("BACKUP_PASSWORD", PASSWORD);
    let out = missing.run(["list"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    runs.push(out);

    let mut log_bytes = 0;
    for out in &runs {
        assert_clean(out, &secrets);
        log_bytes += out.stdout.len() + out.stderr.len();
    }
    assert!(
        log_bytes > 10_000,
        "trace logging produced only {log_bytes} bytes"
    );
    println!(
        "secrets: {} runs at log level trace ({log_bytes} bytes of output) show no password or secret key",
        runs.len()
    );
}
