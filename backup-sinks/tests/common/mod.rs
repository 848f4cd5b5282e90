//! Test servers: s3s-fs and moto (S3) and Azurite (Azure Blob Storage),
//! each started on 127.0.0.1 on a free port in a fresh temporary directory,
//! and killed when its guard is dropped.
//!
//! A missing server program fails the test with a message naming the install
//! script; nothing is skipped.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tempfile::TempDir;

use backup_sinks::object_store::{ObjectStoreOptions, ObjectStoreSink};

/// How long a server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "run scripts/install-test-servers.sh";

/// Azurite's development account and its published key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running server process; killed (and its directory removed) on drop.
pub struct Server {
    name: &'static str,
    child: Child,
    pub port: u16,
    /// The server's working directory: data and logs.
    pub dir: TempDir,
}

impl Server {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines the server wrote, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["stdout.log", "stderr.log"] {
            if let Ok(content) = std::fs::read_to_string(self.dir.path().join(file)) {
                let lines: Vec<&str> = content.lines().collect();
                let start = lines.len().saturating_sub(20);
                text.push_str(&format!("--- {file}\n{}\n", lines[start..].join("\n")));
            }
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.name;
    }
}

/// Finds `program` on PATH or in the given extra places, or fails the test.
pub fn find_program(program: &str, extra: &[PathBuf]) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin"))
        .into_iter();
    for dir in on_path.into_iter().chain(cargo_bin) {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    for candidate in extra {
        if is_executable(candidate) {
            return candidate.clone();
        }
    }
    panic!(
        "{program} not found on PATH{}: {INSTALL_HINT}",
        if extra.is_empty() {
            String::new()
        } else {
            format!(" or at {extra:?}")
        }
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts `command` in `dir` (logs in `dir/stdout.log`, `dir/stderr.log`)
/// and waits until it accepts connections on `port`.
fn start(name: &'static str, mut command: Command, dir: TempDir, port: u16) -> Server {
    let stdout = File::create(dir.path().join("stdout.log")).expect("creating stdout.log");
    let stderr = File::create(dir.path().join("stderr.log")).expect("creating stderr.log");
    let child = command
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {name} failed: {error}; {INSTALL_HINT}"));
    let mut server = Server {
        name,
        child,
        port,
        dir,
    };
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{name} exited with {status} before accepting connections on port {port}\n{}",
                server.log_tail()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{name} did not accept connections on port {port} within {STARTUP_TIMEOUT:?}\n{}",
                server.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An S3 server with one empty bucket and the credentials to use it.
pub struct S3Server {
    pub server: Server,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    /// Options that reach this server.
    pub fn options(&self) -> ObjectStoreOptions {
        ObjectStoreOptions {
            endpoint: Some(self.server.endpoint()),
            region: Some("us-east-1".into()),
            allow_http: Some(true),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            // Fail fast in tests rather than retrying for minutes.
            max_retries: 2,
            ..Default::default()
        }
    }

    /// A sink on `s3://bucket/prefix` of this server.
    pub fn sink(&self, prefix: &str, options: ObjectStoreOptions) -> ObjectStoreSink {
        let url = format!("s3://{}/{prefix}", self.bucket);
        ObjectStoreSink::from_url(&url, &options)
            .unwrap_or_else(|error| panic!("opening {url}: {error}"))
    }
}

/// Starts s3s-fs with a bucket named `bucket`.
pub fn start_s3s_fs() -> S3Server {
    let program = find_program("s3s-fs", &[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("data");
    let bucket = "bucket".to_owned();
    std::fs::create_dir_all(root.join(&bucket)).expect("creating the bucket directory");
    let (access_key, secret_key) = ("test-access-key".to_owned(), "test-secret-key".to_owned());
    let port = free_port();
    let mut command = Command::new(program);
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", &access_key, "--secret-key", &secret_key])
        .arg(&root);
    let server = start("s3s-fs", command, dir, port);
    S3Server {
        server,
        bucket,
        access_key,
        secret_key,
    }
}

/// Starts moto's S3 server and creates a bucket.
pub fn start_moto() -> S3Server {
    let program = find_program("moto_server", &[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut command = Command::new(program);
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let server = start("moto_server", command, dir, port);
    let bucket = "bucket".to_owned();
    // moto does not check signatures: a plain CreateBucket request will do.
    let (status, body) = http_request(port, "PUT", &format!("/{bucket}"), &[]);
    assert_eq!(
        status,
        200,
        "creating the bucket on moto: {body}\n{}",
        server.log_tail()
    );
    S3Server {
        server,
        bucket,
        access_key: "moto-access-key".into(),
        secret_key: "moto-secret-key".into(),
    }
}

/// Azurite's blob service with one empty container.
pub struct AzureServer {
    pub server: Server,
    pub container: String,
}

impl AzureServer {
    /// Options that reach this server.
    pub fn options(&self) -> ObjectStoreOptions {
        ObjectStoreOptions {
            endpoint: Some(self.server.endpoint()),
            azure_use_emulator: true,
            max_retries: 2,
            ..Default::default()
        }
    }

    /// A sink on `az://container/prefix` of this server.
    pub fn sink(&self, prefix: &str, options: ObjectStoreOptions) -> ObjectStoreSink {
        let url = format!("az://{}/{prefix}", self.container);
        ObjectStoreSink::from_url(&url, &options)
            .unwrap_or_else(|error| panic!("opening {url}: {error}"))
    }
}

/// Where scripts/install-test-servers.sh installs Azurite.
pub fn azurite_install_dir() -> PathBuf {
    std::env::var_os("BACKUP_TEST_SERVERS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/backup-test-servers"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache/backup-test-servers"))
}

/// Starts Azurite's blob service and creates a container.
pub fn start_azurite() -> AzureServer {
    let program = find_program(
        "azurite-blob",
        &[azurite_install_dir().join("node_modules/.bin/azurite-blob")],
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut command = Command::new(program);
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path().join("data"))
        .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"]);
    let server = start("azurite-blob", command, dir, port);
    let container = "container".to_owned();
    create_azure_container(&server, &container);
    AzureServer { server, container }
}

/// Creates a container with a Shared Key signed request (object_store
/// cannot create containers).
fn create_azure_container(server: &Server, container: &str) {
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .expect("Azurite's key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let authorization = format!("SharedKey {AZURITE_ACCOUNT}:{signature}");
    let (status, body) = http_request(
        server.port,
        "PUT",
        &format!("{path}?restype=container"),
        &[
            ("x-ms-date", &date),
            ("x-ms-version", version),
            ("Authorization", &authorization),
        ],
    );
    assert_eq!(
        status,
        201,
        "creating the Azurite container: {body}\n{}",
        server.log_tail()
    );
}

/// Sends one HTTP/1.1 request without a body to 127.0.0.1:`port` and
/// returns the status and body.
pub fn http_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("setting a timeout");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("sending the request");
    let mut response = String::new();
    // The server closes the connection after the response; a reset after a
    // complete status line is fine.
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in the response {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Writes a small tree of files with varied sizes and contents.
pub fn write_sample_tree(root: &Path) {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (dir, files) in [("", 3), ("docs", 4), ("docs/deep/er", 2), ("empty-dir", 0)] {
        let dir_path = root.join(dir);
        std::fs::create_dir_all(&dir_path).expect("creating a sample directory");
        for i in 0..files {
            let size = (next() % 300_000) as usize;
            let data: Vec<u8> = (0..size).map(|_| (next() % 7) as u8 + b'a').collect();
            std::fs::write(dir_path.join(format!("file-{i}.txt")), data)
                .expect("writing a sample file");
        }
    }
    std::fs::write(root.join("empty-file"), b"").expect("writing an empty file");
}

/// Every file below `root` with its contents, relative paths sorted.
pub fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading a directory") {
            let entry = entry.expect("reading a directory entry");
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            if entry.file_type().expect("file type").is_dir() {
                found.push((format!("{relative}/"), Vec::new()));
                pending.push(path);
            } else {
                found.push((relative, std::fs::read(&path).expect("reading a file")));
            }
        }
    }
    found.sort();
    found
}
