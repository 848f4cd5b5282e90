#!/usr/bin/env bash
# Installs the servers that the backup-sinks integration tests start on
# 127.0.0.1: s3s-fs and moto (S3), Azurite (Azure Blob), OpenSSH (SFTP), and
# the data stores the snapshotters' tests back up: etcd, Redis, PostgreSQL
# and MariaDB (with pgBackRest, the PostgreSQL benchmark's peer).
#
# Idempotent: each step is skipped when its program is already installed.
# Meant for a fresh Debian machine, run as root (as scripts/test.sh and CI
# do); every step uses a package registry only (crates.io, PyPI, npm, Debian).
#
# Where things end up:
#   s3s-fs        ~/.cargo/bin/s3s-fs            (cargo install)
#   moto_server   on PATH, from `python3 -m pip`
#   azurite-blob  $BACKUP_TEST_SERVERS_DIR/node_modules/.bin/azurite-blob
#                 (default BACKUP_TEST_SERVERS_DIR=$HOME/.cache/backup-test-servers;
#                 the tests look there and on PATH)
#   sshd          /usr/sbin/sshd                 (Debian openssh-server)
#   etcd, etcdctl /usr/bin                       (Debian etcd-server, etcd-client)
#   redis-server  /usr/bin                       (Debian redis-server)
#   postgres, pg_basebackup, pgbench ...
#                 /usr/lib/postgresql/MAJOR/bin  (Debian postgresql)
#   pgbackrest    /usr/bin                       (Debian pgbackrest)
#   mariadbd      /usr/sbin; mariadb-dump, mariadb-backup /usr/bin
#                 (Debian mariadb-server, mariadb-backup)
#   cargo-deny    ~/.cargo/bin/cargo-deny        (cargo install; the dependency
#                 policy check of scripts/test.sh, not a server)
set -euo pipefail

# Versions that build and run on this project's machines: newer s3s-fs needs a
# newer rustc, newer Azurite needs Node 22.
S3S_FS_VERSION=0.14.1
AZURITE_VERSION=3.35.0
# cargo-deny 0.20.2 needs rustc 1.88 or later (built here with 1.95); deny.toml
# is written for it, so another installed version is replaced.
CARGO_DENY_VERSION=0.20.2
SERVERS_DIR="${BACKUP_TEST_SERVERS_DIR:-$HOME/.cache/backup-test-servers}"

have() { command -v "$1" >/dev/null 2>&1; }

# --- S3: s3s-fs ---------------------------------------------------------------
if have s3s-fs || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
    echo "s3s-fs: already installed"
else
    echo "s3s-fs: installing $S3S_FS_VERSION with cargo"
    cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary
fi

# --- S3: moto -----------------------------------------------------------------
if have moto_server; then
    echo "moto_server: already installed"
else
    echo "moto_server: installing moto[server] with pip"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi

# --- Azure: Azurite -------------------------------------------------------------
if have azurite-blob || [ -x "$SERVERS_DIR/node_modules/.bin/azurite-blob" ]; then
    echo "azurite-blob: already installed"
else
    if ! have npm; then
        echo "azurite-blob: installing Node.js and npm from Debian"
        apt-get update
        apt-get install -y nodejs npm
    fi
    echo "azurite-blob: installing azurite@$AZURITE_VERSION into $SERVERS_DIR"
    mkdir -p "$SERVERS_DIR"
    npm install --no-audit --no-fund --prefix "$SERVERS_DIR" "azurite@$AZURITE_VERSION"
fi

# --- SSH: OpenSSH server (for the SFTP sink's tests) ----------------------------
if [ -x /usr/sbin/sshd ]; then
    echo "sshd: already installed"
else
    echo "sshd: installing openssh-server from Debian"
    # Refresh the package lists only when they were never fetched.
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
        apt-get update
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server; then
        # Stale package lists: refresh them and try once more.
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server
    fi
fi

# --- Data stores: etcd, Redis, PostgreSQL, MariaDB (Debian) -------------------------
stores=()
command -v openssl >/dev/null || stores+=(openssl)
command -v etcd >/dev/null || stores+=(etcd-server)
command -v etcdctl >/dev/null || stores+=(etcd-client)
command -v redis-server >/dev/null || stores+=(redis-server)
# PostgreSQL's programs live in /usr/lib/postgresql/MAJOR/bin; pgbench comes
# with them (postgresql-contrib on older releases).
ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || stores+=(postgresql postgresql-contrib)
command -v pgbackrest >/dev/null || stores+=(pgbackrest)
[ -x /usr/sbin/mariadbd ] || stores+=(mariadb-server)
command -v mariadb-backup >/dev/null || stores+=(mariadb-backup)
if [ "${#stores[@]}" -eq 0 ]; then
    echo "etcd, redis, postgresql, mariadb: already installed"
else
    echo "data stores: installing ${stores[*]} from Debian"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${stores[@]}"; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${stores[@]}"
    fi
fi
# Debian starts the packaged services; the tests start their own servers on
# other ports, so stop these to keep the machine quiet.
for service in etcd redis-server postgresql mariadb; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$service" >/dev/null 2>&1 || true; fi
done

# --- Dependency policy: cargo-deny -----------------------------------------------
if [ "$(cargo deny --version 2>/dev/null || true)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "cargo-deny: already installed"
else
    echo "cargo-deny: installing $CARGO_DENY_VERSION with cargo"
    cargo install "cargo-deny@$CARGO_DENY_VERSION" --locked
fi

# --- Peers of the benchmark's quick mode: restic, GNU time, strace; and the ----
# --- tools the metadata tests compare with: getfattr (attr), getfacl (acl) -------
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v getfattr >/dev/null || missing+=(attr)
command -v getfacl >/dev/null || missing+=(acl)
[ -x /usr/bin/time ] || missing+=(time)
command -v strace >/dev/null || missing+=(strace)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "benchmark peers and attr/acl tools: already installed"
else
    echo "benchmark peers and attr/acl tools: installing ${missing[*]} from Debian"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
fi

echo "test servers installed"
