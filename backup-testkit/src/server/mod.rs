//! Real servers on 127.0.0.1 for the tests: [`s3`] (s3s-fs, moto),
//! [`azure`] (Azurite) and [`sshd`] (OpenSSH).
//!
//! Every launcher goes through [`ServerProcess::start`], which does what all
//! of them need: start the program in a process group of its own with its
//! output in a log file, find its port, wait until it answers a real request
//! of its protocol, and kill the group (and whatever left it) on drop. A new
//! kind of server (etcd, Redis, PostgreSQL, MariaDB…) is a [`ServerKind`]:
//! its command line, how it takes a port, and its readiness request.
//!
//! Ports cannot be raced for. A server that can bind port 0 is given 0 and
//! its port is read from the kernel (the listening sockets the process
//! holds, [`process::listening_ports`]). A server that needs a number is
//! given a candidate; when it exits before listening, or another process
//! holds the port, it is started again on another one, a few times at most.
//! Either way the port counts only once the kernel says this process
//! listens on it, so a test never talks to another test's server.

pub mod azure;
pub mod etcd;
pub mod mariadb;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod sshd;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process;

/// What to do when a server program is missing.
pub const INSTALL_HINT: &str = "install the test servers with scripts/install-test-servers.sh \
     (the tests start real servers on 127.0.0.1 and never skip)";

/// How long a port must look held by another process, while our server
/// runs without owning it, before another port is tried.
const FOREIGN_PORT_PATIENCE: Duration = Duration::from_secs(2);

/// How long a server may take to answer its first request: a hang guard
/// (Azurite and moto start in seconds, slower on a loaded machine).
pub const STARTUP_HANG_GUARD: Duration = Duration::from_secs(120);

/// Starts with a candidate port taken by someone else before it gives up.
const PORT_ATTEMPTS: u32 = 8;

/// How a server is given its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// The server binds port 0; its port is read from the kernel.
    Ephemeral,
    /// The server needs a number: a free-looking candidate is tried, and
    /// another when the server cannot have it.
    Candidate,
    /// Exactly this port (a restart on the port clients know); tried again
    /// while someone else holds it.
    Fixed(u16),
}

/// One kind of server: what [`ServerProcess::start`] needs to know.
pub trait ServerKind {
    /// Its name in messages and log file names: `s3s-fs`, `sshd`.
    fn name(&self) -> &str;

    /// How it takes its port.
    fn port_choice(&self) -> PortChoice;

    /// The command that starts it in the foreground on `port` (0 for
    /// [`PortChoice::Ephemeral`]), keeping its files in `dir`. Its output
    /// is redirected to the log and its working directory set by the
    /// caller.
    fn command(&self, port: u16, dir: &Path) -> Command;

    /// Whether the server on `port` answers a real request of its protocol
    /// (an S3 ListBuckets, an SSH banner…), not merely a TCP connect.
    fn is_ready(&self, port: u16) -> bool;
}

/// A running server: a process group of its own, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `kind` with its files and its log (`<name>.log`, appended to
    /// across restarts) in `dir`, and returns once it answers on its port.
    ///
    /// # Panics
    ///
    /// When the program cannot be started (with the install hint), when it
    /// exits before answering (with its log), when no port could be had in
    /// a few attempts, or when it does not answer within
    /// [`STARTUP_HANG_GUARD`].
    pub fn start(kind: &dyn ServerKind, dir: &Path) -> ServerProcess {
        let name = kind.name().to_owned();
        let log = dir.join(format!("{name}.log"));
        let attempts = match kind.port_choice() {
            PortChoice::Ephemeral => 1,
            PortChoice::Candidate | PortChoice::Fixed(_) => PORT_ATTEMPTS,
        };
        let mut failures = Vec::new();
        for attempt in 1..=attempts {
            let wanted = match kind.port_choice() {
                PortChoice::Ephemeral => 0,
                PortChoice::Candidate => candidate_port(),
                PortChoice::Fixed(port) => port,
            };
            let mut command = kind.command(wanted, dir);
            let output = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap_or_else(|error| panic!("opening {}: {error}", log.display()));
            let errors = output
                .try_clone()
                .unwrap_or_else(|error| panic!("opening {}: {error}", log.display()));
            process::in_own_group(&mut command)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(errors);
            let child = command.spawn().unwrap_or_else(|error| {
                panic!("starting {name} ({command:?}) failed: {error}; {INSTALL_HINT}")
            });
            let mut server = ServerProcess {
                name: name.clone(),
                child,
                port: wanted,
                log: log.clone(),
            };
            match server.wait_until_ready(kind, wanted) {
                Ok(port) => {
                    server.port = port;
                    return server;
                }
                Err(why) => {
                    server.kill();
                    failures.push(format!("attempt {attempt} (port {wanted}): {why}"));
                    if matches!(kind.port_choice(), PortChoice::Fixed(_)) {
                        // Give whoever holds the port a moment to let go.
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
        panic!(
            "{name} did not start:\n{}\n--- {}:\n{}",
            failures.join("\n"),
            log.display(),
            tail(&log, 40)
        );
    }

    /// Waits until the server listens on its port and answers there. `Err`
    /// when it cannot have the port (exited, or the port is someone else's):
    /// the caller may try another.
    fn wait_until_ready(&mut self, kind: &dyn ServerKind, wanted: u16) -> Result<u16, String> {
        let deadline = Instant::now() + STARTUP_HANG_GUARD;
        // When the port is seen listened on but not (yet) among our
        // server's sockets: the scan of its sockets and the kernel's table
        // are two reads, and a server that binds between them looks like a
        // stranger for one poll. A server that cannot bind exits (caught
        // above), so only a port held for a while by someone else while
        // ours keeps running counts as taken.
        let mut foreign_since: Option<Instant> = None;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before answering",
                    self.name
                ));
            }
            let ours = process::listening_ports(self.child.id());
            let port = match wanted {
                0 => ours.iter().next().copied(),
                port => ours.contains(&port).then_some(port),
            };
            match port {
                Some(port) if kind.is_ready(port) => return Ok(port),
                Some(_) => {}
                None if wanted != 0 && process::port_is_listened_on(wanted) => {
                    let since = *foreign_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > FOREIGN_PORT_PATIENCE {
                        return Err(format!(
                            "port {wanted} is held by another process (ours listens on {ours:?})"
                        ));
                    }
                }
                None => foreign_since = None,
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not answer on 127.0.0.1 within {STARTUP_HANG_GUARD:?} (listening on {ours:?})\n--- {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} ({}):\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 30)
        )
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it with everything it started, as a crash would.
    pub fn kill(&mut self) {
        process::kill_and_reap(&mut self.child);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listened on a moment ago: only a candidate, see
/// [`PortChoice::Candidate`].
pub fn candidate_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding 127.0.0.1:0 to find a candidate port")
}

/// A port of 127.0.0.1 where connections are refused, held for as long as
/// this value lives: bound but never listening, so no other test's server
/// can take it meanwhile (a closed port could be reused by the next server
/// started).
#[derive(Debug)]
pub struct RefusedPort {
    _socket: rustix::fd::OwnedFd,
    port: u16,
}

impl RefusedPort {
    /// Binds a port without listening on it.
    ///
    /// # Panics
    ///
    /// When no socket can be bound.
    pub fn new() -> RefusedPort {
        use rustix::net::{bind, getsockname, socket, AddressFamily, SocketType};
        let socket =
            socket(AddressFamily::INET, SocketType::STREAM, None).expect("creating a TCP socket");
        bind(&socket, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let address = getsockname(&socket).expect("the bound address");
        let port = SocketAddrV4::try_from(address)
            .expect("an IPv4 address")
            .port();
        RefusedPort {
            _socket: socket,
            port,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        RefusedPort::new()
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds `program` on PATH, in ~/.cargo/bin or at one of `extra`.
///
/// # Panics
///
/// When it is nowhere, with the install hint.
pub fn find_program(program: &str, extra: &[PathBuf]) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .chain(extra.iter().cloned())
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!("`{program}` not found on PATH, in ~/.cargo/bin or at {extra:?}: {INSTALL_HINT}")
        })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs a command to completion and returns its stdout.
///
/// # Panics
///
/// When it cannot start or fails, with its output.
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
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh temporary directory for a server, named after it.
pub(crate) fn server_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir()
        .expect("creating a temporary directory for a server")
}

/// An HTTP response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Sends one HTTP/1.1 request without a body to 127.0.0.1:`port`.
///
/// # Errors
///
/// When the connection fails or the answer is not HTTP.
pub fn http_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    // The server closes the connection after the response; a reset after a
    // complete status line is fine.
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status in {response:?}"),
            )
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}

/// Creates `path` with `contents` and `mode`.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) {
    let mut file =
        File::create(path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
    file.write_all(contents)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's HTTP file server, which binds the port it is given.
    struct PythonHttp(PortChoice);

    impl ServerKind for PythonHttp {
        fn name(&self) -> &str {
            "python-http"
        }

        fn port_choice(&self) -> PortChoice {
            self.0
        }

        fn command(&self, port: u16, _dir: &Path) -> Command {
            let mut command = Command::new("python3");
            command.args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ]);
            command
        }

        fn is_ready(&self, port: u16) -> bool {
            http_request(port, "GET", "/", &[]).is_ok_and(|response| response.status == 200)
        }
    }

    #[test]
    fn a_server_on_port_0_is_found_where_the_kernel_put_it_and_killed_on_drop() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = ServerProcess::start(&PythonHttp(PortChoice::Ephemeral), dir.path());
        let (port, pid) = (server.port(), server.pid());
        assert_ne!(port, 0);
        assert!(process::listening_ports(pid).contains(&port));
        let other = ServerProcess::start(&PythonHttp(PortChoice::Candidate), dir.path());
        assert_ne!(other.port(), port);
        drop(server);
        assert!(!process::port_is_listened_on(port), "killed with its port");
    }

    #[test]
    #[should_panic(expected = "python-http did not start")]
    fn a_port_held_by_someone_else_is_never_taken_for_the_server() {
        let holder = TcpListener::bind("127.0.0.1:0").expect("binding");
        let port = holder.local_addr().expect("address").port();
        let dir = tempfile::tempdir().expect("temporary directory");
        ServerProcess::start(&PythonHttp(PortChoice::Fixed(port)), dir.path());
    }

    #[test]
    fn a_refused_port_refuses() {
        let refused = RefusedPort::new();
        assert!(TcpStream::connect(("127.0.0.1", refused.port())).is_err());
    }
}
