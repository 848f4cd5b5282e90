//! Azure Blob Storage: Azurite's blob service.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tempfile::TempDir;

use super::{
    find_program, http_request, server_dir, HttpResponse, PortChoice, ServerKind, ServerProcess,
};

/// Azurite's development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The development account's published key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The REST API version of the requests signed here.
const API_VERSION: &str = "2021-08-06";

/// Azurite's blob service with one empty container.
#[derive(Debug)]
pub struct AzureServer {
    /// The process.
    pub server: ServerProcess,
    /// The container, empty at the start.
    pub container: String,
    // Last: the directory outlives the process.
    dir: TempDir,
}

impl AzureServer {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Where Azurite keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Where scripts/install-test-servers.sh installs Azurite:
/// `$BACKUP_TEST_SERVERS_DIR`, by default `~/.cache/backup-test-servers`.
pub fn azurite_install_dir() -> PathBuf {
    std::env::var_os("BACKUP_TEST_SERVERS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/backup-test-servers"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache/backup-test-servers"))
}

struct Azurite {
    program: PathBuf,
}

impl ServerKind for Azurite {
    fn name(&self) -> &str {
        "azurite-blob"
    }

    fn port_choice(&self) -> PortChoice {
        PortChoice::Ephemeral
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.join("data"))
            .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"]);
        command
    }

    /// A signed List Containers request succeeds.
    fn is_ready(&self, port: u16) -> bool {
        signed_request(port, "GET", "", &[("comp", "list")]).is_ok_and(|r| r.status == 200)
    }
}

/// Starts Azurite's blob service and creates an empty container named
/// `container`.
///
/// # Panics
///
/// When Azurite is not installed, does not start, or refuses the container.
pub fn start_azurite() -> AzureServer {
    let kind = Azurite {
        program: find_program(
            "azurite-blob",
            &[azurite_install_dir().join("node_modules/.bin/azurite-blob")],
        ),
    };
    let dir = server_dir("azurite");
    let server = ServerProcess::start(&kind, dir.path());
    let container = "container".to_owned();
    // object_store cannot create containers: a Create Container request.
    let response = signed_request(
        server.port(),
        "PUT",
        &container,
        &[("restype", "container")],
    )
    .unwrap_or_else(|error| panic!("creating the Azurite container: {error}"));
    assert_eq!(
        response.status,
        201,
        "creating the Azurite container: {}\n{}",
        response.body,
        server.log_tail()
    );
    AzureServer {
        server,
        container,
        dir,
    }
}

/// Sends a request without a body for `resource` (below the account, `""`
/// for the account itself) with the `query` parameters, signed with the
/// development account's Shared Key.
fn signed_request(
    port: u16,
    method: &str,
    resource: &str,
    query: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // Path-style addressing, as for the emulator: /account/resource.
    let path = if resource.is_empty() {
        format!("/{AZURITE_ACCOUNT}")
    } else {
        format!("/{AZURITE_ACCOUNT}/{resource}")
    };
    // https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
    let mut string_to_sign = format!(
        "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{AZURITE_ACCOUNT}{path}"
    );
    let mut sorted = query.to_vec();
    sorted.sort();
    for (name, value) in &sorted {
        string_to_sign.push_str(&format!("\n{name}:{value}"));
    }
    let key = BASE64
        .decode(AZURITE_KEY)
        .expect("Azurite's published key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    let authorization = format!("SharedKey {AZURITE_ACCOUNT}:{signature}");
    let query: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    http_request(
        port,
        method,
        &format!("{path}?{}", query.join("&")),
        &[
            ("x-ms-date", &date),
            ("x-ms-version", API_VERSION),
            ("Authorization", &authorization),
        ],
    )
}
