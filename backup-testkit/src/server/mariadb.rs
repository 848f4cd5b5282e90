//! A MariaDB server (Debian `mariadb-server`) in a temporary directory:
//! `mariadb-install-db`, then `mariadbd` on 127.0.0.1 with the binary log
//! on. As root the server runs as root (`--user=root`), so that the tests
//! and `mariadb-backup` read its files.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{find_program, server_dir, PortChoice, ServerKind, ServerProcess};

fn server_program() -> PathBuf {
    find_program("mariadbd", &[PathBuf::from("/usr/sbin/mariadbd")])
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

struct MariadbKind<'a> {
    data_dir: &'a Path,
    socket: PathBuf,
}

impl ServerKind for MariadbKind<'_> {
    fn name(&self) -> &str {
        "mariadbd"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Candidate
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        let tmp = dir.join("tmp");
        let _ = std::fs::create_dir_all(&tmp);
        let mut command = Command::new(server_program());
        command
            .arg("--no-defaults")
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--datadir={}", self.data_dir.display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .arg(format!(
                "--log-bin={}",
                self.data_dir.join("binlog").display()
            ))
            .args(["--server-id=1", "--innodb-flush-log-at-trx-commit=2"]);
        if is_root() {
            command.arg("--user=root");
        }
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        Command::new(find_program("mariadb-admin", &[]))
            .args(["--no-defaults", "--host=127.0.0.1", "--protocol=TCP"])
            .arg(format!("--port={port}"))
            .args(["--user=root", "--connect-timeout=2", "ping"])
            .env_remove("MYSQL_PWD")
            .output()
            // A server whose root has a password answers "Access denied": it is up.
            .is_ok_and(|output| {
                output.status.success()
                    || String::from_utf8_lossy(&output.stderr).contains("Access denied")
            })
    }
}

/// A running MariaDB; killed on drop.
#[derive(Debug)]
pub struct Mariadb {
    process: ServerProcess,
    data_dir: PathBuf,
    password: Option<String>,
    // Last: the directory outlives the process.
    _dir: TempDir,
}

impl Mariadb {
    /// A new server whose `root` connects from 127.0.0.1 without a password.
    pub fn start() -> Mariadb {
        Mariadb::start_with_password(None)
    }

    /// A new server; with `password`, `root` from 127.0.0.1 needs it.
    ///
    /// # Panics
    ///
    /// When `mariadb-install-db` or the server fails.
    pub fn start_with_password(password: Option<&str>) -> Mariadb {
        let dir = server_dir("mariadb");
        let data_dir = dir.path().join("data");
        // A temporary directory of its own: installs running at once in one
        // /tmp collide on their temporary tables' names.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("creating the server's tmpdir");
        let mut install = Command::new(find_program("mariadb-install-db", &[]));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data_dir.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=root");
        }
        super::run_checked(&mut install);
        let mut server = Mariadb::launch(data_dir, dir);
        // The server skips name resolution, as production servers commonly
        // do: the accounts mariadb-install-db made for this host's name
        // would be unusable (and `SHOW CREATE USER` refuses them).
        for host in server
            .sql("SELECT host FROM mysql.user WHERE user = 'root' AND host NOT IN ('localhost', '127.0.0.1', '::1')")
            .lines()
        {
            server.sql(&format!("DROP USER root@'{host}'"));
        }
        if let Some(password) = password {
            server.sql(&format!(
                "ALTER USER root@'127.0.0.1' IDENTIFIED BY '{password}'; FLUSH PRIVILEGES"
            ));
            server.password = Some(password.to_string());
        }
        server
    }

    /// A server started on `data_dir` as it is (a restored one).
    pub fn start_on(data_dir: &Path) -> Mariadb {
        Mariadb::launch(data_dir.to_path_buf(), server_dir("mariadb-restored"))
    }

    fn launch(data_dir: PathBuf, dir: TempDir) -> Mariadb {
        let kind = MariadbKind {
            data_dir: &data_dir,
            socket: dir.path().join("mariadb.sock"),
        };
        let process = ServerProcess::start(&kind, dir.path());
        Mariadb {
            process,
            data_dir,
            password: None,
            _dir: dir,
        }
    }

    /// `mysql://root[:PASSWORD]@127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("mysql://root:{password}@127.0.0.1:{}/", self.port()),
            None => format!("mysql://root@127.0.0.1:{}/", self.port()),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Runs `sql` with the `mariadb` client; returns its tab-separated
    /// output without column names, trimmed.
    ///
    /// # Panics
    ///
    /// When the client fails.
    pub fn sql(&self, sql: &str) -> String {
        let mut command = Command::new(find_program("mariadb", &[]));
        command
            .args(["--no-defaults", "--host=127.0.0.1", "--protocol=TCP"])
            .arg(format!("--port={}", self.port()))
            .args(["--user=root", "--batch", "--skip-column-names", "-e", sql]);
        match &self.password {
            Some(password) => command.env("MYSQL_PWD", password),
            None => command.env_remove("MYSQL_PWD"),
        };
        super::run_checked(&mut command).trim().to_string()
    }

    /// Connects with `password` from now on (after a restore gave `root`
    /// the source's).
    pub fn use_password(&mut self, password: &str) {
        self.password = Some(password.to_string());
    }

    /// Stops it as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
