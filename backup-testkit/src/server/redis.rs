//! A Redis server (Debian `redis-server`) in a temporary directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{find_program, server_dir, PortChoice, ServerKind, ServerProcess};

struct RedisKind<'a> {
    data_dir: &'a Path,
    extra: &'a [String],
}

impl ServerKind for RedisKind<'_> {
    fn name(&self) -> &str {
        "redis-server"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Candidate
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut command = Command::new(find_program(
            "redis-server",
            &[PathBuf::from("/usr/bin/redis-server")],
        ));
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .args(["--appendonly", "no", "--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(self.data_dir)
            .args(self.extra);
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..read]);
        // A server with a password answers NOAUTH: it is up.
        answer.starts_with("+PONG") || answer.contains("NOAUTH")
    }
}

/// A running Redis; killed on drop.
#[derive(Debug)]
pub struct Redis {
    process: ServerProcess,
    data_dir: PathBuf,
    password: Option<String>,
    // Last: the directory outlives the process.
    _dir: TempDir,
}

impl Redis {
    /// A new server with an empty data directory, no persistence of its own.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A new server with extra command-line settings
    /// (`["--requirepass", "secret"]`).
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = server_dir("redis");
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).expect("creating the Redis data directory");
        Redis::launch(data_dir, dir, extra)
    }

    /// A server started on `data_dir` as it is (a restored `dump.rdb`).
    pub fn start_on(data_dir: &Path) -> Redis {
        Redis::launch(data_dir.to_path_buf(), server_dir("redis-restored"), &[])
    }

    fn launch(data_dir: PathBuf, dir: TempDir, extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|word| word.to_string()).collect();
        let password = extra
            .iter()
            .position(|word| word == "--requirepass")
            .and_then(|at| extra.get(at + 1).cloned());
        let kind = RedisKind {
            data_dir: &data_dir,
            extra: &extra,
        };
        let process = ServerProcess::start(&kind, dir.path());
        Redis {
            process,
            data_dir,
            password,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:PORT/` (with the password when there is one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.process.port()),
            None => format!("redis://127.0.0.1:{}/", self.process.port()),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The data directory (`dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Runs `redis-cli` against this server with `args`; returns its output.
    ///
    /// # Panics
    ///
    /// When redis-cli cannot run or exits non-zero.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(find_program(
            "redis-cli",
            &[PathBuf::from("/usr/bin/redis-cli")],
        ));
        command.args(["-h", "127.0.0.1", "-p", &self.port().to_string()]);
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        command.args(args);
        super::run_checked(&mut command).trim().to_string()
    }

    /// Stops it as a crash would (no save on exit).
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
