//! A one-member etcd (Debian `etcd-server`) in a temporary directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{candidate_port, find_program, server_dir, PortChoice, ServerKind, ServerProcess};

struct EtcdKind<'a> {
    name: &'a str,
    data_dir: &'a Path,
    peer_port: u16,
    extra: &'a [String],
}

impl ServerKind for EtcdKind<'_> {
    fn name(&self) -> &str {
        "etcd"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Candidate
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut command = Command::new(find_program("etcd", &[PathBuf::from("/usr/bin/etcd")]));
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = format!("http://127.0.0.1:{port}");
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}={peer}", self.name))
            .arg("--log-level=warn")
            .args(self.extra);
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        health(port)
    }
}

/// Whether `GET /health` on the client port says healthy.
fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// A running one-member etcd; killed on drop.
#[derive(Debug)]
pub struct Etcd {
    /// The member's name.
    pub name: String,
    peer_port: u16,
    process: ServerProcess,
    data_dir: PathBuf,
    // Last: the directory outlives the process.
    _dir: TempDir,
}

impl Etcd {
    /// A new member with an empty database.
    pub fn start() -> Etcd {
        let dir = server_dir("etcd");
        let data_dir = dir.path().join("member.etcd");
        Etcd::launch("test", data_dir, candidate_port(), dir, &[])
    }

    /// A member started on a data directory made by a restore, with the
    /// name and peer port the restore was given.
    pub fn start_restored(name: &str, data_dir: &Path, peer_port: u16) -> Etcd {
        let dir = server_dir("etcd-restored");
        Etcd::launch(name, data_dir.to_path_buf(), peer_port, dir, &[])
    }

    fn launch(
        name: &str,
        data_dir: PathBuf,
        peer_port: u16,
        dir: TempDir,
        extra: &[String],
    ) -> Etcd {
        let kind = EtcdKind {
            name,
            data_dir: &data_dir,
            peer_port,
            extra,
        };
        let process = ServerProcess::start(&kind, dir.path());
        Etcd {
            name: name.to_string(),
            peer_port,
            process,
            data_dir,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`, the client URL.
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// Puts `key` = `value` through etcd's JSON gateway (`/v3/kv/put`),
    /// over a connection of its own; returns whether etcd said yes.
    pub fn put(&self, key: &str, value: &[u8]) -> bool {
        put(self.port(), key, value)
    }

    /// Runs `etcdctl` (API 3) against this member with `args`; returns its
    /// standard output.
    ///
    /// # Panics
    ///
    /// When etcdctl fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut command = etcdctl();
        command
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args);
        super::run_checked(&mut command)
    }
}

/// Puts through the JSON gateway of the member on `port`.
pub fn put(port: u16, key: &str, value: &[u8]) -> bool {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\"}}",
        engine.encode(key),
        engine.encode(value)
    );
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// `etcdctl` with `ETCDCTL_API=3`.
pub fn etcdctl() -> Command {
    let mut command = Command::new(find_program(
        "etcdctl",
        &[PathBuf::from("/usr/bin/etcdctl")],
    ));
    command.env("ETCDCTL_API", "3");
    command
}
