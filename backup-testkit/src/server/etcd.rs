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
    tls: Option<&'a EtcdCerts>,
    initial_cluster: Option<&'a str>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with openssl, for an etcd whose client port takes TLS with client
/// certificates only.
#[derive(Debug, Clone)]
pub struct EtcdCerts {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate the server accepts.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl EtcdCerts {
    fn make(dir: &Path) -> EtcdCerts {
        let openssl = |args: &[&str]| {
            let mut command = Command::new("openssl");
            command.current_dir(dir).args(args);
            super::run_checked(&mut command);
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test etcd CA",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("writing the certificate extensions");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
            .expect("writing the certificate extensions");
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=root")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        EtcdCerts {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{port}");
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!(
                "--initial-cluster={}",
                self.initial_cluster
                    .map_or_else(|| format!("{}={peer}", self.name), str::to_string)
            ))
            .arg("--log-level=warn");
        if let Some(certs) = self.tls {
            command
                .arg(format!("--cert-file={}", certs.server_cert.display()))
                .arg(format!("--key-file={}", certs.server_key.display()))
                .arg(format!("--trusted-ca-file={}", certs.ca.display()))
                .arg("--client-cert-auth");
        }
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        match self.tls {
            None => health(port),
            Some(certs) => etcdctl()
                .arg(format!("--endpoints=https://127.0.0.1:{port}"))
                .arg(format!("--cacert={}", certs.ca.display()))
                .arg(format!("--cert={}", certs.client_cert.display()))
                .arg(format!("--key={}", certs.client_key.display()))
                .args(["endpoint", "health"])
                .output()
                .is_ok_and(|output| output.status.success()),
        }
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
    certs: Option<EtcdCerts>,
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
        Etcd::launch("test", data_dir, candidate_port(), dir, false)
    }

    /// A new member whose client port takes TLS and client certificates
    /// only ([`Etcd::certs`]).
    pub fn start_tls() -> Etcd {
        let dir = server_dir("etcd-tls");
        let data_dir = dir.path().join("member.etcd");
        Etcd::launch("test", data_dir, candidate_port(), dir, true)
    }

    /// The certificates of a TLS member.
    pub fn certs(&self) -> Option<&EtcdCerts> {
        self.certs.as_ref()
    }

    /// A member started on a data directory made by a restore, with the
    /// name and peer port the restore was given.
    pub fn start_restored(name: &str, data_dir: &Path, peer_port: u16) -> Etcd {
        let dir = server_dir("etcd-restored");
        Etcd::launch(name, data_dir.to_path_buf(), peer_port, dir, false)
    }

    /// Starts the members of a cluster restored from one backup, all at
    /// once (each waits for the others to be healthy): `(name, data
    /// directory, peer port)` each, with the initial cluster the restores
    /// were given.
    pub fn start_restored_cluster(
        members: &[(&str, &Path, u16)],
        initial_cluster: &str,
    ) -> Vec<Etcd> {
        std::thread::scope(|scope| {
            let starting: Vec<_> = members
                .iter()
                .map(|(name, data_dir, peer_port)| {
                    scope.spawn(move || {
                        Etcd::launch_with(
                            name,
                            data_dir.to_path_buf(),
                            *peer_port,
                            server_dir("etcd-member"),
                            false,
                            Some(initial_cluster),
                        )
                    })
                })
                .collect();
            starting
                .into_iter()
                .map(|member| member.join().expect("starting a member"))
                .collect()
        })
    }

    fn launch(name: &str, data_dir: PathBuf, peer_port: u16, dir: TempDir, tls: bool) -> Etcd {
        Etcd::launch_with(name, data_dir, peer_port, dir, tls, None)
    }

    fn launch_with(
        name: &str,
        data_dir: PathBuf,
        peer_port: u16,
        dir: TempDir,
        tls: bool,
        initial_cluster: Option<&str>,
    ) -> Etcd {
        let certs = tls.then(|| EtcdCerts::make(dir.path()));
        let kind = EtcdKind {
            name,
            data_dir: &data_dir,
            peer_port,
            tls: certs.as_ref(),
            initial_cluster,
        };
        let process = ServerProcess::start(&kind, dir.path());
        Etcd {
            name: name.to_string(),
            peer_port,
            certs,
            process,
            data_dir,
            _dir: dir,
        }
    }

    /// The client URL: `http://127.0.0.1:PORT`, `https://` with TLS.
    pub fn endpoint(&self) -> String {
        match self.certs {
            Some(_) => format!("https://127.0.0.1:{}", self.process.port()),
            None => self.process.endpoint(),
        }
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
        command.arg(format!("--endpoints={}", self.endpoint()));
        if let Some(certs) = &self.certs {
            command
                .arg(format!("--cacert={}", certs.ca.display()))
                .arg(format!("--cert={}", certs.client_cert.display()))
                .arg(format!("--key={}", certs.client_key.display()));
        }
        command.args(args);
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
