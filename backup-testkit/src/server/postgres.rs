//! A PostgreSQL server (Debian `postgresql`) in a temporary directory.
//!
//! `initdb` makes a new cluster, the server listens on 127.0.0.1 with its
//! socket in the temporary directory. PostgreSQL refuses to run as root,
//! so when the tests run as root the server, `initdb` and the files are the
//! `postgres` user's (`runuser`); clients (`psql`, `pg_basebackup`) run as
//! whoever runs the tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{find_program, server_dir, PortChoice, ServerKind, ServerProcess};

/// The directory of PostgreSQL's programs: the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian's layout), else the directory
/// of `postgres` on the `PATH`.
///
/// # Panics
///
/// When PostgreSQL is not installed, with the install hint.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => find_program("postgres", &[])
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    }
}

/// Whether this process runs as root (the server then runs as `postgres`).
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command running `program` as the server's user: the `postgres` user
/// when running as root (through `runuser`), else whoever runs the tests.
/// What the server itself runs (`archive_command`) runs as that user too.
pub fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Gives `path` (recursively) to the `postgres` user when running as root.
///
/// # Panics
///
/// When `chown` fails.
pub fn give_to_server_user(path: &Path) {
    if is_root() {
        super::run_checked(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path),
        );
    }
}

struct PostgresKind<'a> {
    data_dir: &'a Path,
    socket_dir: &'a Path,
    settings: &'a [(String, String)],
}

impl ServerKind for PostgresKind<'_> {
    fn name(&self) -> &str {
        "postgres"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Candidate
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut command = as_server_user(&bin_dir().join("postgres"));
        command
            .arg("-D")
            .arg(self.data_dir)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(self.socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"]);
        for (name, value) in self.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        Command::new(bin_dir().join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// How to make and start a server.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// The `postgres` role's password; connections over TCP then need it
    /// (`scram-sha-256`), without one they are trusted.
    pub password: Option<String>,
    /// Extra `-c name=value` settings (`archive_command`...).
    pub settings: Vec<(String, String)>,
}

/// A running PostgreSQL; killed on drop.
#[derive(Debug)]
pub struct Postgres {
    process: ServerProcess,
    data_dir: PathBuf,
    password: Option<String>,
    // Last: the directory outlives the process.
    dir: TempDir,
}

impl Postgres {
    /// A new cluster, trusting connections from 127.0.0.1.
    pub fn start() -> Postgres {
        Postgres::start_with(PostgresOptions::default())
    }

    /// A new cluster made and started with `options`.
    ///
    /// # Panics
    ///
    /// When `initdb` or the server fails.
    pub fn start_with(options: PostgresOptions) -> Postgres {
        let dir = Postgres::server_dir("postgres");
        let data_dir = dir.path().join("data");
        let mut initdb = as_server_user(&bin_dir().join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", "postgres", "--auth-local=trust", "--no-sync"]);
        match &options.password {
            Some(password) => {
                let file = dir.path().join("pwfile");
                std::fs::write(&file, password).expect("writing the password file");
                give_to_server_user(&file);
                initdb
                    .arg("--auth-host=scram-sha-256")
                    .arg("--pwfile")
                    .arg(&file);
            }
            None => {
                initdb.arg("--auth-host=trust");
            }
        }
        super::run_checked(&mut initdb);
        Postgres::launch(data_dir, dir, options)
    }

    /// A server started on `data_dir` as it is (a restored one), which is
    /// given to the server's user first (and its parent opened to it).
    pub fn start_on(data_dir: &Path, options: PostgresOptions) -> Postgres {
        let dir = Postgres::server_dir("postgres-restored");
        if let Some(parent) = data_dir.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("opening the data directory's parent");
        }
        give_to_server_user(data_dir);
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .expect("setting the data directory's mode");
        Postgres::launch(data_dir.to_path_buf(), dir, options)
    }

    fn server_dir(name: &str) -> TempDir {
        let dir = server_dir(name);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("opening the server directory");
        give_to_server_user(dir.path());
        dir
    }

    fn launch(data_dir: PathBuf, dir: TempDir, options: PostgresOptions) -> Postgres {
        let kind = PostgresKind {
            data_dir: &data_dir,
            socket_dir: dir.path(),
            settings: &options.settings,
        };
        let process = ServerProcess::start(&kind, dir.path());
        Postgres {
            process,
            data_dir,
            password: options.password,
            dir,
        }
    }

    /// `postgresql://postgres[:PASSWORD]@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `database`.
    pub fn url_for(&self, database: &str) -> String {
        match &self.password {
            Some(password) => format!(
                "postgresql://postgres:{password}@127.0.0.1:{}/{database}",
                self.port()
            ),
            None => format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port()),
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

    /// A directory beside the server that its user may write (an archive).
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("creating a scratch directory");
        give_to_server_user(&path);
        path
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Runs `sql` in `database` with `psql`; returns its unaligned,
    /// tuples-only output, trimmed.
    ///
    /// # Panics
    ///
    /// When psql fails.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let mut command = Command::new(bin_dir().join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url_for(database))
            .args(["-c", sql]);
        super::run_checked(&mut command).trim().to_string()
    }

    /// Runs a PostgreSQL client program (`pgbench`, `pg_verifybackup`...)
    /// from the server's directory of programs; returns its output.
    ///
    /// # Panics
    ///
    /// When it fails.
    pub fn run(program: &str, args: &[&str]) -> String {
        super::run_checked(Command::new(bin_dir().join(program)).args(args))
    }

    /// Stops it as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
