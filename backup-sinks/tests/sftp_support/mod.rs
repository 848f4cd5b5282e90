//! A real OpenSSH server for the SFTP sink tests.
//!
//! Each [`Server`] lives in its own temporary directory with freshly
//! generated host and client keys, listens on a free port of 127.0.0.1 and
//! serves SFTP with `internal-sftp`. It is killed, with every session
//! process it forked, when dropped. When `sshd` or `ssh-keygen` is missing
//! the tests fail with a message saying how to install them: they never
//! skip.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backup_sinks::sftp::SftpOptions;

/// Passphrase of the RSA client key.
pub const RSA_PASSPHRASE: &str = "rsa key passphrase 42";

/// Where Debian installs the server.
const SSHD: &str = "/usr/sbin/sshd";

/// Extra settings of one server start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tweaks {
    /// Limit the size of files the server may write (`ulimit -f`, KiB), so
    /// that writes past it fail like writes to a full disk.
    pub file_size_limit_kib: Option<u64>,
}

/// An OpenSSH server in a temporary directory.
pub struct Server {
    dir: tempfile::TempDir,
    /// The port it listens on, kept across restarts.
    pub port: u16,
    /// The user the tests log in as.
    pub user: String,
    tweaks: Tweaks,
    child: Mutex<Option<Child>>,
}

/// Panics with installation advice when `tool` is missing.
fn require(tool: &str) -> PathBuf {
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
    if !path.is_file() {
        panic!(
            "the SFTP sink tests need OpenSSH's `{tool}`, which is missing: install it with \
             `apt-get update && apt-get install -y openssh-server openssh-client` (these tests \
             start a real sshd on 127.0.0.1 and never skip)"
        );
    }
    path
}

/// Runs a command, panicking with its output if it fails.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Generates a key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut command = Command::new(require("ssh-keygen"));
    command.args(["-q", "-t", kind, "-N", passphrase, "-C", "sftp-test", "-f"]);
    command.arg(path);
    if kind == "rsa" {
        command.args(["-b", "3072"]);
    }
    run(&mut command);
}

/// The `SHA256:...` fingerprint of a public key file, as `ssh-keygen -lf`
/// prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let listed = run(Command::new(require("ssh-keygen"))
        .arg("-lf")
        .arg(public_key));
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");
    fingerprint
}

/// The login name of the user running the tests.
pub fn current_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_owned()
}

/// Whether the tests run as root.
pub fn running_as_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Server {
    /// Generates keys and starts a server for the current user.
    pub fn start() -> Self {
        Self::start_with(current_user(), Tweaks::default())
    }

    /// Generates keys and starts a server for `user`.
    pub fn start_with(user: String, tweaks: Tweaks) -> Self {
        require(SSHD);
        require("ssh-keygen");
        let dir = tempfile::Builder::new()
            .prefix("sftp-sink-test-")
            .tempdir()
            .unwrap();
        // sshd reads authorized_keys as the user logging in, who may not
        // be the owner of the directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path();
        keygen(&root.join("host_ed25519"), "ed25519", "");
        keygen(&root.join("host_rsa"), "rsa", "");
        keygen(&root.join("other_host_ed25519"), "ed25519", "");
        keygen(&root.join("client_ed25519"), "ed25519", "");
        keygen(&root.join("client_rsa"), "rsa", RSA_PASSPHRASE);
        keygen(&root.join("stranger_ed25519"), "ed25519", "");
        let authorized = [
            fs::read_to_string(root.join("client_ed25519.pub")).unwrap(),
            fs::read_to_string(root.join("client_rsa.pub")).unwrap(),
        ]
        .concat();
        fs::write(root.join("authorized_keys"), authorized).unwrap();
        fs::set_permissions(
            root.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::create_dir(root.join("data")).unwrap();
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o777)).unwrap();
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").ok();

        let server = Self {
            dir,
            port: free_port(),
            user,
            tweaks,
            child: Mutex::new(None),
        };
        let host_key = fs::read_to_string(server.path("host_ed25519.pub")).unwrap();
        server.write_known_hosts("known_hosts", &host_key);
        server.launch();
        server
    }

    /// A path inside the server's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory the tests store objects in.
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// Writes a known_hosts file `name` with `public_key` (a `.pub` line)
    /// for this server's address.
    pub fn write_known_hosts(&self, name: &str, public_key: &str) -> PathBuf {
        let mut fields = public_key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
        let path = self.path(name);
        fs::write(
            &path,
            format!(
                "# written by the SFTP sink tests\nexample.org ssh-ed25519 {blob}\n[127.0.0.1]:{} {kind} {blob}\n",
                self.port
            ),
        )
        .unwrap();
        path
    }

    /// `sftp://user@127.0.0.1:port<absolute path>`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// The URL of the data directory.
    pub fn data_url(&self) -> String {
        self.url(&self.data())
    }

    /// Options that log in with the ed25519 key and trust `known_hosts`.
    pub fn options(&self) -> SftpOptions {
        let mut options = SftpOptions::default()
            .with_private_key(self.path("client_ed25519"))
            .with_known_hosts(self.path("known_hosts"))
            .with_connect_timeout(Duration::from_secs(20));
        options.request_timeout = Duration::from_secs(30);
        options
    }

    /// The fingerprint of the server's real host key.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.path("host_ed25519.pub"))
    }

    /// Starts sshd and waits until it answers with an SSH banner.
    fn launch(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "the server is already running");
        let log_path = self.path("sshd.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut arguments: Vec<String> = vec![
            SSHD.into(),
            "-D".into(),
            "-e".into(),
            "-f".into(),
            "/dev/null".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        for option in [
            "ListenAddress=127.0.0.1".to_owned(),
            format!("HostKey={}", self.path("host_ed25519").display()),
            format!("HostKey={}", self.path("host_rsa").display()),
            format!(
                "AuthorizedKeysFile={}",
                self.path("authorized_keys").display()
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
            arguments.push("-o".into());
            arguments.push(option);
        }
        let mut command = match self.tweaks.file_size_limit_kib {
            // Through a shell for `ulimit`; SIGXFSZ ignored so that writes
            // past the limit fail with EFBIG instead of killing the server.
            Some(limit) => {
                let mut command = Command::new("bash");
                command
                    .arg("-c")
                    .arg(format!("trap '' XFSZ; ulimit -f {limit}; exec \"$@\""));
                command.arg("sshd-with-limit");
                command.args(&arguments);
                command
            }
            None => {
                let mut command = Command::new(&arguments[0]);
                command.args(&arguments[1..]);
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut started = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = started.try_wait().unwrap() {
                panic!(
                    "sshd exited with {status} before accepting connections; its log:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut banner = [0; 4];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = started.kill();
                panic!(
                    "sshd did not accept connections on 127.0.0.1:{} within 15 s; its log:\n{}",
                    self.port,
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *child = Some(started);
    }

    /// Kills sshd and every session process it forked, as a crash would.
    pub fn kill(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let mut doomed = descendants(child.id());
        doomed.push(child.id());
        for pid in doomed {
            // By id only; the processes may be gone already.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.wait();
    }

    /// Kills the server and starts it again on the same port with the same
    /// host key.
    pub fn restart(&self) {
        self.kill();
        self.launch();
    }

    /// Kills the server and starts it again on the same port with another
    /// ed25519 host key, as an impostor would.
    pub fn restart_with_other_host_key(&self) {
        self.kill();
        for suffix in ["", ".pub"] {
            fs::copy(
                self.path(&format!("other_host_ed25519{suffix}")),
                self.path(&format!("host_ed25519{suffix}")),
            )
            .unwrap();
        }
        self.launch();
    }

    /// Starts the server again after [`kill`](Self::kill).
    pub fn relaunch(&self) {
        self.launch();
    }

    /// sshd's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes below `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
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

/// Every file below `dir` with its contents, keyed by relative path.
pub fn read_tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Names of the temporary files below `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
