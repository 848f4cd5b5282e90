//! S3 servers: s3s-fs (objects as files, signatures checked) and moto
//! (AWS's mock, in memory, signatures not checked).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{find_program, http_request, server_dir, PortChoice, ServerKind, ServerProcess};

/// An S3 server with one empty bucket, and the credentials it accepts.
#[derive(Debug)]
pub struct S3Server {
    /// The process.
    pub server: ServerProcess,
    /// The bucket, empty at the start.
    pub bucket: String,
    /// The access key id it accepts.
    pub access_key: String,
    /// The secret key it accepts.
    pub secret_key: String,
    /// Where s3s-fs keeps the bucket's objects; `None` for moto.
    bucket_dir: Option<PathBuf>,
    // Last: the directory outlives the process.
    dir: TempDir,
}

impl S3Server {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The bucket's directory on disk (s3s-fs keeps each object as a file).
    ///
    /// # Panics
    ///
    /// For moto, which keeps objects in memory.
    pub fn bucket_dir(&self) -> PathBuf {
        self.bucket_dir
            .clone()
            .expect("only s3s-fs keeps its objects on disk")
    }

    /// The server's directory: data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether an S3 service answers on `port`: a ListBuckets request gets an
/// S3 XML answer (a list, or an S3 error such as AccessDenied for a request
/// without a signature), not just an open socket.
fn answers_s3(port: u16) -> bool {
    http_request(port, "GET", "/", &[]).is_ok_and(|response| {
        response.body.contains("<ListAllMyBucketsResult") || response.body.contains("<Error>")
    })
}

struct S3sFs {
    program: PathBuf,
    data: PathBuf,
}

const ACCESS_KEY: &str = "test-access-key";
const SECRET_KEY: &str = "test-secret-key";

impl ServerKind for S3sFs {
    fn name(&self) -> &str {
        "s3s-fs"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Ephemeral
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.data);
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        answers_s3(port)
    }
}

/// Starts s3s-fs with an empty bucket named `bucket`.
///
/// # Panics
///
/// When s3s-fs is not installed or does not start.
pub fn start_s3s_fs() -> S3Server {
    let program = find_program("s3s-fs", &[]);
    let dir = server_dir("s3s-fs");
    let bucket = "bucket".to_owned();
    let data = dir.path().join("data");
    let bucket_dir = data.join(&bucket);
    fs::create_dir_all(&bucket_dir).expect("creating the bucket's directory");
    let kind = S3sFs { program, data };
    let server = ServerProcess::start(&kind, dir.path());
    S3Server {
        server,
        bucket,
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        bucket_dir: Some(bucket_dir),
        dir,
    }
}

struct Moto {
    program: PathBuf,
}

impl ServerKind for Moto {
    fn name(&self) -> &str {
        "moto_server"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Ephemeral
    }

    fn command(&self, port: u16, _dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        command
    }

    fn is_ready(&self, port: u16) -> bool {
        answers_s3(port)
    }
}

/// Starts moto's S3 server and creates an empty bucket named `bucket`.
///
/// # Panics
///
/// When moto is not installed, does not start, or refuses the bucket.
pub fn start_moto() -> S3Server {
    let kind = Moto {
        program: find_program("moto_server", &[]),
    };
    let dir = server_dir("moto");
    let server = ServerProcess::start(&kind, dir.path());
    let bucket = "bucket".to_owned();
    // moto does not check signatures: a plain CreateBucket request will do.
    let response = http_request(server.port(), "PUT", &format!("/{bucket}"), &[])
        .unwrap_or_else(|error| panic!("creating the bucket on moto: {error}"));
    assert_eq!(
        response.status,
        200,
        "creating the bucket on moto: {}\n{}",
        response.body,
        server.log_tail()
    );
    S3Server {
        server,
        bucket,
        access_key: "moto-access-key".into(),
        secret_key: "moto-secret-key".into(),
        bucket_dir: None,
        dir,
    }
}
