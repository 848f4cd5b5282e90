//! Helpers of the remote-repository tests: test servers (s3s-fs, Azurite,
//! OpenSSH's sshd) on free ports of 127.0.0.1, each killed when its guard is
//! dropped; a deterministic tree generator and an exact tree comparison; a
//! runner for the `backupctl` binary with a clean environment and a time
//! limit.
//!
//! A missing server program fails the test with a message naming the install
//! script; nothing is skipped. (Copied and adapted from backup-sinks' test
//! helpers: test crates cannot share modules. base64, HMAC-SHA256 and the
//! HTTP date are written out here, with `sha2`, to need no more
//! dev-dependencies.)

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use filetime::FileTime;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

const INSTALL_HINT: &str = "install the test servers with scripts/install-test-servers.sh \
     (these tests start real servers on 127.0.0.1 and never skip)";
/// How long a server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Azurite's development account and its published key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

// ---------------------------------------------------------------------------
// Programs, ports and processes.

/// Finds `program` on PATH, in ~/.cargo/bin or in `extra`, or fails the test.
pub fn find_program(program: &str, extra: &[PathBuf]) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    let candidates = on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .chain(extra.iter().cloned());
    for candidate in candidates {
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!("`{program}` not found on PATH, in ~/.cargo/bin or at {extra:?}: {INSTALL_HINT}");
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// Runs a command to completion, panicking with its output if it fails.
pub fn run_checked(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}; {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The processes below `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised name.
        let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(parent) = after_name
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            pending.push(child);
        }
    }
    found
}

/// A running server process in its own temporary directory; killed, with
/// the processes it forked, on drop.
pub struct Server {
    name: &'static str,
    child: Child,
    pub port: u16,
    /// The server's working directory: data, keys and logs.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A path inside the server's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The last lines the server logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["stdout.log", "stderr.log"] {
            if let Ok(content) = fs::read_to_string(self.path(file)) {
                let lines: Vec<&str> = content.lines().collect();
                let start = lines.len().saturating_sub(30);
                text.push_str(&format!(
                    "--- {} {file}\n{}\n",
                    self.name,
                    lines[start..].join("\n")
                ));
            }
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // By process id only: the server and what it forked (sshd sessions).
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` in `dir` (logs in `dir/stdout.log` and `dir/stderr.log`)
/// and waits until `ready` says the server on `port` answers.
fn start(
    name: &'static str,
    mut command: Command,
    dir: tempfile::TempDir,
    port: u16,
    ready: fn(u16) -> bool,
) -> Server {
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
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if ready(port) {
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn accepts_connections(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
}

fn sends_ssh_banner(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0; 4];
    stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
}

// ---------------------------------------------------------------------------
// S3: s3s-fs.

/// s3s-fs with one empty bucket, and the credentials it accepts.
pub struct S3Server {
    pub server: Server,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    /// The bucket's directory on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.server.path("data").join(&self.bucket)
    }
}

/// Starts s3s-fs with a bucket named `bucket`.
pub fn start_s3s_fs() -> S3Server {
    let program = find_program("s3s-fs", &[]);
    let dir = tempfile::Builder::new()
        .prefix("s3s-fs-")
        .tempdir()
        .expect("temporary directory");
    let bucket = "bucket".to_owned();
    fs::create_dir_all(dir.path().join("data").join(&bucket))
        .expect("creating the bucket directory");
    let (access_key, secret_key) = ("test-access-key".to_owned(), "test-secret-key".to_owned());
    let port = free_port();
    let mut command = Command::new(program);
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", &access_key, "--secret-key", &secret_key])
        .arg(dir.path().join("data"));
    let server = start("s3s-fs", command, dir, port, accepts_connections);
    S3Server {
        server,
        bucket,
        access_key,
        secret_key,
    }
}

// ---------------------------------------------------------------------------
// Azure: Azurite.

/// Azurite's blob service with one empty container.
pub struct AzureServer {
    pub server: Server,
    pub container: String,
}

/// Where scripts/install-test-servers.sh installs Azurite.
fn azurite_install_dir() -> PathBuf {
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
    let dir = tempfile::Builder::new()
        .prefix("azurite-")
        .tempdir()
        .expect("temporary directory");
    let port = free_port();
    let mut command = Command::new(program);
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path().join("data"))
        .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"]);
    let server = start("azurite-blob", command, dir, port, accepts_connections);
    let container = "container".to_owned();
    create_azure_container(&server, &container);
    AzureServer { server, container }
}

/// Creates a container with a Shared Key signed request (object_store
/// cannot create containers).
fn create_azure_container(server: &Server, container: &str) {
    let date = http_date(SystemTime::now());
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64_decode(AZURITE_KEY);
    let signature = base64_encode(&hmac_sha256(&key, string_to_sign.as_bytes()));
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

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); panics on other characters.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = BASE64
            .iter()
            .position(|&d| d == c)
            .unwrap_or_else(|| panic!("{c:?} is not base64 in {text:?}"));
        buffer = buffer << 6 | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An RFC 1123 date, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

// ---------------------------------------------------------------------------
// SFTP: OpenSSH's sshd.

/// Where Debian installs the server.
const SSHD: &str = "/usr/sbin/sshd";

/// An OpenSSH server with freshly generated keys: host keys `host_ed25519`
/// (served) and `other_host_ed25519` (not served), client key
/// `client_ed25519` (authorised), and `known_hosts` trusting the host key.
pub struct Sshd {
    pub server: Server,
    /// The user the tests log in as (the one running them).
    pub user: String,
}

/// Panics with installation advice when OpenSSH's `tool` is missing.
fn require_openssh(tool: &str) -> PathBuf {
    let path = if tool.contains('/') {
        PathBuf::from(tool)
    } else {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(tool))
                    .find(|candidate| candidate.is_file())
            })
            .unwrap_or_else(|| PathBuf::from(tool))
    };
    assert!(
        path.is_file(),
        "OpenSSH's `{tool}` is missing: {INSTALL_HINT} (or `apt-get install -y openssh-server \
         openssh-client`)"
    );
    path
}

/// Generates an unencrypted key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, kind: &str) {
    run_checked(
        Command::new(require_openssh("ssh-keygen"))
            .args(["-q", "-t", kind, "-N", "", "-C", "backupctl-test", "-f"])
            .arg(path),
    );
}

/// The `SHA256:...` fingerprint of a public key file, as `ssh-keygen -lf`
/// prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let listed = run_checked(
        Command::new(require_openssh("ssh-keygen"))
            .arg("-lf")
            .arg(public_key),
    );
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");
    fingerprint
}

/// The login name of the user running the tests.
pub fn current_user() -> String {
    run_checked(Command::new("id").arg("-un")).trim().to_owned()
}

impl Sshd {
    /// Generates keys and starts sshd for the current user.
    pub fn start() -> Sshd {
        require_openssh(SSHD);
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir()
            .expect("temporary directory");
        // sshd reads authorized_keys as the user logging in.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path();
        for key in ["host_ed25519", "other_host_ed25519", "client_ed25519"] {
            keygen(&root.join(key), "ed25519");
        }
        fs::copy(
            root.join("client_ed25519.pub"),
            root.join("authorized_keys"),
        )
        .unwrap();
        fs::set_permissions(
            root.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").ok();
        let port = free_port();
        let mut command = Command::new(SSHD);
        command.args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()]);
        for option in [
            "ListenAddress=127.0.0.1".to_owned(),
            format!("HostKey={}", root.join("host_ed25519").display()),
            format!(
                "AuthorizedKeysFile={}",
                root.join("authorized_keys").display()
            ),
            "UsePAM=no".into(),
            "StrictModes=no".into(),
            "PidFile=none".into(),
            "PermitRootLogin=prohibit-password".into(),
            "PasswordAuthentication=no".into(),
            "KbdInteractiveAuthentication=no".into(),
            "LogLevel=VERBOSE".into(),
            "Subsystem=sftp internal-sftp".into(),
        ] {
            command.arg("-o").arg(option);
        }
        let server = start("sshd", command, dir, port, sends_ssh_banner);
        let sshd = Sshd {
            server,
            user: current_user(),
        };
        let host_key = fs::read_to_string(sshd.path("host_ed25519.pub")).unwrap();
        sshd.write_known_hosts("known_hosts", &host_key);
        sshd
    }

    /// A path inside the server's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.server.path(name)
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Writes a known_hosts file `name` giving `public_key` (a `.pub` line)
    /// for `[127.0.0.1]:PORT`, after an entry for another host.
    pub fn write_known_hosts(&self, name: &str, public_key: &str) -> PathBuf {
        let mut fields = public_key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
        let path = self.path(name);
        fs::write(
            &path,
            format!(
                "# written by the backupctl remote tests\nexample.org {kind} {blob}\n[127.0.0.1]:{} {kind} {blob}\n",
                self.port()
            ),
        )
        .unwrap();
        path
    }

    /// `sftp://user@127.0.0.1:PORT/absolute/path`.
    pub fn url(&self, path: &Path) -> String {
        assert!(path.is_absolute(), "{}", path.display());
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port(),
            path.display()
        )
    }

    /// The fingerprint of the host key the server presents.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.path("host_ed25519.pub"))
    }

    /// sshd's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.server.log_tail()
    }
}

// ---------------------------------------------------------------------------
// Running backupctl.

/// The outcome of one `backupctl` run.
#[derive(Debug)]
pub struct Out {
    pub args: String,
    /// The exit status; `None` when killed at the time limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    /// Asserts exit status 0.
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            Some(0),
            "backupctl {} failed:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    /// Asserts a non-zero exit status (not a kill at the time limit).
    pub fn fails(self) -> Out {
        assert!(
            matches!(self.code, Some(code) if code != 0),
            "backupctl {} should have failed:\n{}",
            self.args,
            self.describe()
        );
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "backupctl {}: stdout is not JSON ({error}):\n{}",
                self.args,
                self.describe()
            )
        })
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= 6000 {
        return text.to_string();
    }
    let mut cut = 6000;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// Runs `backupctl` against one repository: a clean environment (no
/// `BACKUP_*`, `AWS_*`, `AZURE_*`, `AZURITE_*`, `GOOGLE_*` from the caller),
/// the repository and store options after the subcommand, a working
/// directory of its own, and a time limit.
#[derive(Clone)]
pub struct Backupctl {
    /// The working directory of every run: nothing should appear in it.
    pub cwd: PathBuf,
    logs: PathBuf,
    global: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    pub time_limit: Duration,
    /// Start the process and return at once (see [`Backupctl::spawn`]).
    detach: bool,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static DETACHED: std::cell::RefCell<Option<std::process::Child>> =
        const { std::cell::RefCell::new(None) };
}

impl Backupctl {
    /// A runner whose working directory and logs are under `scratch`.
    pub fn new(scratch: &Path) -> Backupctl {
        let cwd = scratch.join("cwd");
        let logs = scratch.join("logs");
        fs::create_dir_all(&cwd).unwrap();
        fs::create_dir_all(&logs).unwrap();
        Backupctl {
            cwd,
            logs,
            global: Vec::new(),
            env: vec![("BACKUP_LOG".into(), "warn".into())],
            time_limit: Duration::from_secs(300),
            detach: false,
        }
    }

    /// Adds arguments given to every subcommand (`--repo`, `--endpoint`...).
    pub fn global<I, S>(mut self, args: I) -> Backupctl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.global
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of every run.
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Backupctl {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// `backupctl ARGS[0] GLOBAL... ARGS[1..]`, collecting its output; killed
    /// at the time limit.
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let at = args.len().min(1);
        args.splice(at..at, self.global.iter().cloned());
        let mut command = Command::new(env!("CARGO_BIN_EXE_backupctl"));
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if ["BACKUP_", "AWS_", "AZURE_", "AZURITE_", "GOOGLE_"]
                .iter()
                .any(|prefix| text.starts_with(prefix))
            {
                command.env_remove(&name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        // Output to files, so that no pipe fills up while we wait.
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let (out_path, err_path) = (
            self.logs.join(format!("{run}.stdout")),
            self.logs.join(format!("{run}.stderr")),
        );
        command
            .args(&args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap());
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let started = Instant::now();
        let mut child = command.spawn().expect("starting backupctl");
        if self.detach {
            DETACHED.with(|slot| *slot.borrow_mut() = Some(child));
            return Out {
                args: shown,
                code: None,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: started.elapsed(),
            };
        }
        let code = loop {
            if let Some(status) = child.try_wait().expect("waiting for backupctl") {
                break status.code();
            }
            if started.elapsed() > self.time_limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = Out {
            args: shown,
            code,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed: started.elapsed(),
        };
        println!(
            "backupctl {}: exit {:?} in {:.1?}",
            out.args, out.code, out.elapsed
        );
        out
    }

    /// Starts `backupctl ARGS` (as [`Backupctl::run`] does) without
    /// waiting for it; the caller kills or waits for the child.
    pub fn spawn<I, S>(&self, args: I) -> std::process::Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let detached = Backupctl {
            detach: true,
            ..self.clone()
        };
        detached.run(args);
        DETACHED
            .with(|slot| slot.borrow_mut().take())
            .expect("the child was started")
    }

    /// What appeared in the working directory (relative paths).
    pub fn litter(&self) -> BTreeSet<String> {
        all_paths(&self.cwd)
    }
}

/// A number field of a JSON object.
pub fn num(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

// ---------------------------------------------------------------------------
// Trees.

/// xorshift64* generator: deterministic and fast.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// What [`generate_tree`] built.
#[derive(Debug, Default, Clone)]
pub struct TreeStats {
    pub files: u64,
    /// Directories including the root.
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o644, 0o600, 0o640, 0o755, 0o400, 0o444, 0o664,
];
const DIR_MODES: &[u32] = &[0o755, 0o755, 0o700, 0o750, 0o775];

/// A time in 2000..2022 with nanoseconds.
fn past_time(rng: &mut Rng) -> FileTime {
    FileTime::from_unix_time(
        946_684_800 + rng.range(0, 700_000_000) as i64,
        rng.range(0, 1_000_000_000) as u32,
    )
}

/// Writes `len` bytes from `seed` to `path`: incompressible, or log-like
/// text when `text`.
fn write_content(path: &Path, seed: u64, len: u64, text: bool) {
    let mut rng = Rng::new(seed);
    let mut file = File::create(path).expect("creating a file");
    let mut buffer = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill(&mut buffer[..n]);
        if text {
            for byte in &mut buffer[..n] {
                *byte = b"abcdefgh ijklmnop\nqrstuvwxyz 0123456789 "[(*byte % 40) as usize];
            }
        }
        file.write_all(&buffer[..n]).expect("writing a file");
        left -= n as u64;
    }
}

/// Builds a deterministic tree under `root` (which must not exist): about
/// 300 files from 0 bytes to 20 MiB in nested directories with Unicode
/// names, empty directories, symlinks (relative, to a directory, dangling),
/// varied modes and past mtimes with nanoseconds on everything.
pub fn generate_tree(root: &Path, seed: u64) -> TreeStats {
    let mut rng = Rng::new(seed);
    let mut stats = TreeStats {
        dirs: 1,
        ..TreeStats::default()
    };
    fs::create_dir(root).expect("creating the tree root");
    let dirs = [
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/d",
        "a/b/c/d/e",
        "docs",
        "docs/日本語",
        "docs/日本語/データ",
        "Каталог с пробелами",
        "emoji 📁🦀",
        "big",
    ];
    let empty_dirs = ["empty", "a/b/empty leaf", "docs/空のフォルダ"];
    for dir in dirs.iter().chain(&empty_dirs) {
        fs::create_dir(root.join(dir)).expect("creating a directory");
        stats.dirs += 1;
    }
    let mut file = |rel: &str, len: u64, text: bool, mode: u32, rng: &mut Rng| {
        let path = root.join(rel);
        write_content(&path, rng.next_u64(), len, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        let mtime = past_time(rng);
        filetime::set_file_times(&path, mtime, mtime).expect("setting file times");
        stats.files += 1;
        stats.bytes += len;
    };
    // Fixed files: the largest, exact sizes, Unicode names.
    file("big/twenty-mib.bin", 20 * MIB, false, 0o644, &mut rng);
    file(
        "big/one-and-a-half-mib.log",
        3 * MIB / 2,
        true,
        0o600,
        &mut rng,
    );
    file("big/exactly-1-mib.bin", MIB, false, 0o644, &mut rng);
    file("empty-file", 0, false, 0o644, &mut rng);
    file("a/b/c/d/e/deepest.txt", 777, true, 0o644, &mut rng);
    for (i, name) in [
        "日本語のファイル.txt",
        "Привет мир.txt",
        "🎉 party 🎈.bin",
        "e\u{301}te\u{301} (NFD).txt",
        "\u{e9}t\u{e9} (NFC).txt",
        " leading space.txt",
        "trailing space.txt ",
        "quote\"s and 'apostrophes'.txt",
        "star*and?question[1].txt",
    ]
    .iter()
    .enumerate()
    {
        file(
            &format!("emoji 📁🦀/{name}"),
            100 * i as u64,
            true,
            0o644,
            &mut rng,
        );
    }
    // The random part.
    for i in 0..280 {
        let dir = *rng.pick(&dirs[..dirs.len() - 1]);
        let len = match rng.range(0, 100) {
            0..=7 => 0,
            8..=69 => rng.range(1, 4 * KIB),
            70..=95 => rng.range(4 * KIB, 64 * KIB),
            _ => rng.range(64 * KIB, 512 * KIB),
        };
        let text = rng.range(0, 2) == 0;
        let mode = *rng.pick(FILE_MODES);
        let name = format!("{dir}/file-{i:03}{}", if text { ".txt" } else { ".bin" });
        file(&name, len, text, mode, &mut rng);
    }
    // Symlinks.
    for (rel, target) in [
        ("link-to-file", "big/exactly-1-mib.bin"),
        ("a/b/link-up", "../../emoji 📁🦀/日本語のファイル.txt"),
        ("link-to-dir", "docs/日本語"),
        ("link-dangling", "does/not/exist/ファイル"),
        ("docs/link-absolute", "/etc/hostname"),
    ] {
        let path = root.join(rel);
        std::os::unix::fs::symlink(target, &path).expect("creating a symlink");
        let mtime = past_time(&mut rng);
        filetime::set_symlink_file_times(&path, mtime, mtime).expect("setting symlink times");
        stats.symlinks += 1;
    }
    // Directory modes and times last, deepest first, then the root.
    let mut all_dirs: Vec<&str> = dirs.iter().chain(&empty_dirs).copied().collect();
    all_dirs.sort_by_key(|dir| std::cmp::Reverse(dir.matches('/').count()));
    for dir in all_dirs.into_iter().chain([""]) {
        let path = root.join(dir);
        let mode = if dir.is_empty() {
            0o755
        } else {
            *rng.pick(DIR_MODES)
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod dir");
        let mtime = past_time(&mut rng);
        filetime::set_file_times(&path, mtime, mtime).expect("setting directory times");
    }
    stats
}

/// Relative paths (`/`-separated) of everything under `root`, not `root`
/// itself.
pub fn all_paths(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = join(&rel, &name);
            if entry.file_type().expect("file type").is_dir() {
                stack.push((entry.path(), child.clone()));
            }
            out.insert(child);
        }
    }
    out
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn sha256_file(path: &Path) -> [u8; 32] {
    let mut file = File::open(path).expect("opening a file to hash");
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; MIB as usize];
    loop {
        let n = file.read(&mut buffer).expect("reading a file to hash");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().into()
}

fn kind(metadata: &fs::Metadata) -> &'static str {
    let t = metadata.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "special"
    }
}

/// Every difference between the trees `a` and `b`: names, type, size,
/// content, mode, mtime (seconds and nanoseconds), symlink target.
pub fn diff_trees(a: &Path, b: &Path) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_node(a, b, "", &mut diffs);
    diffs
}

fn diff_node(a: &Path, b: &Path, rel: &str, diffs: &mut Vec<String>) {
    let show = if rel.is_empty() { "." } else { rel };
    let (ma, mb) = match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(ma), Ok(mb)) => (ma, mb),
        (ra, rb) => {
            diffs.push(format!(
                "{show:?}: cannot stat: {:?} / {:?}",
                ra.err(),
                rb.err()
            ));
            return;
        }
    };
    if kind(&ma) != kind(&mb) {
        diffs.push(format!("{show:?}: type {} vs {}", kind(&ma), kind(&mb)));
        return;
    }
    if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
        diffs.push(format!(
            "{show:?}: mode {:o} vs {:o}",
            ma.mode() & 0o7777,
            mb.mode() & 0o7777
        ));
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        diffs.push(format!(
            "{show:?}: mtime {}.{:09} vs {}.{:09}",
            ma.mtime(),
            ma.mtime_nsec(),
            mb.mtime(),
            mb.mtime_nsec()
        ));
    }
    match kind(&ma) {
        "file" => {
            if ma.len() != mb.len() {
                diffs.push(format!("{show:?}: size {} vs {}", ma.len(), mb.len()));
            } else if sha256_file(a) != sha256_file(b) {
                diffs.push(format!("{show:?}: content differs"));
            }
        }
        "symlink" => {
            let (ta, tb) = (fs::read_link(a).ok(), fs::read_link(b).ok());
            if ta != tb {
                diffs.push(format!("{show:?}: link target {ta:?} vs {tb:?}"));
            }
        }
        "dir" => {
            let names = |dir: &Path| -> BTreeSet<OsString> {
                fs::read_dir(dir)
                    .expect("read_dir")
                    .map(|entry| entry.expect("directory entry").file_name())
                    .collect()
            };
            let (na, nb) = (names(a), names(b));
            for missing in na.difference(&nb) {
                diffs.push(format!(
                    "{:?}: missing in the restored tree",
                    join(rel, &missing.to_string_lossy())
                ));
            }
            for extra in nb.difference(&na) {
                diffs.push(format!(
                    "{:?}: extra in the restored tree",
                    join(rel, &extra.to_string_lossy())
                ));
            }
            for name in na.intersection(&nb) {
                let child = join(rel, &name.to_string_lossy());
                diff_node(&a.join(name), &b.join(name), &child, diffs);
            }
        }
        _ => {}
    }
}

/// Panics listing the differences if the trees differ.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = diff_trees(a, b);
    assert!(
        diffs.is_empty(),
        "{} difference(s) between {} and {}; the first ones:\n{}",
        diffs.len(),
        a.display(),
        b.display(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
