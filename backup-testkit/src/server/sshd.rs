//! An OpenSSH server serving SFTP (`internal-sftp`), with fresh keys.
//!
//! [`Sshd`] keeps everything in a temporary directory: host keys
//! `host_ed25519` and `host_rsa` (served) and `other_host_ed25519` (not
//! served, an impostor's), client keys `client_ed25519` and `client_rsa`
//! (authorised; the RSA one encrypted with [`RSA_PASSPHRASE`]) and
//! `stranger_ed25519` (not authorised), `known_hosts` trusting the served
//! key, and `data/`, writable by anyone, for the tests' objects.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tempfile::TempDir;

use super::{run_checked, server_dir, write_file, PortChoice, ServerKind, ServerProcess};

/// Passphrase of the RSA client key.
pub const RSA_PASSPHRASE: &str = "rsa key passphrase 42";

/// Where Debian installs the server.
const SSHD: &str = "/usr/sbin/sshd";

/// Extra settings of one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tweaks {
    /// Limit the size of files the server may write (`ulimit -f`, KiB), so
    /// that writes past it fail as writes to a full disk do.
    pub file_size_limit_kib: Option<u64>,
}

/// A running sshd in a temporary directory of its own; killed with every
/// session process on drop.
#[derive(Debug)]
pub struct Sshd {
    /// The user the tests log in as.
    pub user: String,
    port: u16,
    tweaks: Tweaks,
    process: Mutex<Option<ServerProcess>>,
    // Last: the directory outlives the process.
    dir: TempDir,
}

/// Panics with installation advice when OpenSSH's `tool` is missing.
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
    assert!(
        path.is_file(),
        "OpenSSH's `{tool}` is missing: {} (or `apt-get install -y openssh-server \
         openssh-client`)",
        super::INSTALL_HINT
    );
    path
}

/// Generates a key pair of `kind` (`ed25519`, `rsa`) at `path` and
/// `path.pub`, encrypted with `passphrase` unless it is empty.
pub fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut command = Command::new(require("ssh-keygen"));
    command.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "backup-test",
        "-f",
    ]);
    command.arg(path);
    if kind == "rsa" {
        command.args(["-b", "3072"]);
    }
    run_checked(&mut command);
}

/// The `SHA256:…` fingerprint of a public key file, as `ssh-keygen -lf`
/// prints it.
pub fn fingerprint(public_key: &Path) -> String {
    let listed = run_checked(
        Command::new(require("ssh-keygen"))
            .arg("-lf")
            .arg(public_key),
    );
    let fingerprint = listed.split_whitespace().nth(1).unwrap_or_default();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");
    fingerprint.to_owned()
}

/// The login name of the user running the tests.
pub fn current_user() -> String {
    run_checked(Command::new("id").arg("-un")).trim().to_owned()
}

/// Whether the tests run as root.
pub fn running_as_root() -> bool {
    run_checked(Command::new("id").arg("-u")).trim() == "0"
}

struct SshdKind<'a> {
    dir: &'a Path,
    tweaks: Tweaks,
    choice: PortChoice,
}

impl ServerKind for SshdKind<'_> {
    fn name(&self) -> &str {
        "sshd"
    }

    /// sshd refuses port 0.
    fn port_choice(&self) -> PortChoice {
        self.choice
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut arguments: Vec<String> = vec![
            SSHD.into(),
            "-D".into(),
            "-e".into(),
            "-f".into(),
            "/dev/null".into(),
            "-p".into(),
            port.to_string(),
        ];
        for option in [
            "ListenAddress=127.0.0.1".to_owned(),
            format!("HostKey={}", self.dir.join("host_ed25519").display()),
            format!("HostKey={}", self.dir.join("host_rsa").display()),
            format!(
                "AuthorizedKeysFile={}",
                self.dir.join("authorized_keys").display()
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
        match self.tweaks.file_size_limit_kib {
            // Through a shell for `ulimit`, which then becomes sshd; SIGXFSZ
            // ignored so that writes past the limit fail with EFBIG instead
            // of killing the server.
            Some(limit) => {
                let mut command = Command::new("bash");
                command
                    .arg("-c")
                    .arg(format!("trap '' XFSZ; ulimit -f {limit}; exec \"$@\""))
                    .arg("sshd-with-limit")
                    .args(&arguments);
                command
            }
            None => {
                let mut command = Command::new(&arguments[0]);
                command.args(&arguments[1..]);
                command
            }
        }
    }

    /// The server sends its SSH banner.
    fn is_ready(&self, port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut banner = [0; 4];
        stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
    }
}

impl Sshd {
    /// Generates keys and starts a server for the current user.
    pub fn start() -> Sshd {
        Sshd::start_with(current_user(), Tweaks::default())
    }

    /// Generates keys and starts a server for `user`, with `tweaks`.
    ///
    /// # Panics
    ///
    /// When OpenSSH is not installed or sshd does not start.
    pub fn start_with(user: String, tweaks: Tweaks) -> Sshd {
        require(SSHD);
        let dir = server_dir("sshd");
        let root = dir.path().to_path_buf();
        let root = root.as_path();
        // sshd reads authorized_keys as the user logging in, who may not be
        // the directory's owner.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .expect("chmod of the server directory");
        keygen(&root.join("host_ed25519"), "ed25519", "");
        keygen(&root.join("host_rsa"), "rsa", "");
        keygen(&root.join("other_host_ed25519"), "ed25519", "");
        keygen(&root.join("client_ed25519"), "ed25519", "");
        keygen(&root.join("client_rsa"), "rsa", RSA_PASSPHRASE);
        keygen(&root.join("stranger_ed25519"), "ed25519", "");
        let read = |name: &str| {
            fs::read_to_string(root.join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
        };
        let authorized = [read("client_ed25519.pub"), read("client_rsa.pub")].concat();
        write_file(&root.join("authorized_keys"), authorized.as_bytes(), 0o644);
        fs::create_dir(root.join("data")).expect("creating data/");
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o777))
            .expect("chmod of data/");
        // sshd's privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");

        let kind = SshdKind {
            dir: root,
            tweaks,
            choice: PortChoice::Candidate,
        };
        let process = ServerProcess::start(&kind, root);
        let sshd = Sshd {
            user,
            port: process.port(),
            tweaks,
            process: Mutex::new(Some(process)),
            dir,
        };
        sshd.write_known_hosts("known_hosts", &read("host_ed25519.pub"));
        sshd
    }

    fn process(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        self.process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A path inside the server's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory for the tests' objects.
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// Writes the known_hosts file `name`: an entry for another host, then
    /// `public_key` (a `.pub` line) for `[127.0.0.1]:PORT`.
    pub fn write_known_hosts(&self, name: &str, public_key: &str) -> PathBuf {
        let mut fields = public_key.split_whitespace();
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            panic!("not a public key line: {public_key:?}");
        };
        let path = self.path(name);
        let text = format!(
            "# written by the tests\nexample.org {kind} {blob}\n[127.0.0.1]:{} {kind} {blob}\n",
            self.port
        );
        write_file(&path, text.as_bytes(), 0o644);
        path
    }

    /// `sftp://user@127.0.0.1:PORT/absolute/path`.
    pub fn url(&self, path: &Path) -> String {
        assert!(path.is_absolute(), "{}", path.display());
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// The URL of [`data`](Self::data).
    pub fn data_url(&self) -> String {
        self.url(&self.data())
    }

    /// The fingerprint of the host key the server presents.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.path("host_ed25519.pub"))
    }

    /// sshd's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// How many connections sshd has accepted so far (from its log).
    pub fn connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains("Connection from "))
            .count()
    }

    /// Kills sshd and every session process it forked, as a crash would.
    pub fn kill(&self) {
        // Dropping the process kills it.
        self.process().take();
    }

    /// Starts the server again after [`kill`](Self::kill), on the same port
    /// with the same keys.
    ///
    /// # Panics
    ///
    /// When it is running, or does not start.
    pub fn relaunch(&self) {
        let mut process = self.process();
        assert!(process.is_none(), "sshd is already running");
        let kind = SshdKind {
            dir: self.dir.path(),
            tweaks: self.tweaks,
            choice: PortChoice::Fixed(self.port),
        };
        *process = Some(ServerProcess::start(&kind, self.dir.path()));
    }

    /// Kills the server and starts it again on the same port with the same
    /// host key.
    pub fn restart(&self) {
        self.kill();
        self.relaunch();
    }

    /// Kills the server and starts it again on the same port with another
    /// ed25519 host key (`other_host_ed25519`), as an impostor would.
    pub fn restart_with_other_host_key(&self) {
        self.kill();
        for suffix in ["", ".pub"] {
            fs::copy(
                self.path(&format!("other_host_ed25519{suffix}")),
                self.path(&format!("host_ed25519{suffix}")),
            )
            .expect("installing the other host key");
        }
        self.relaunch();
    }
}
