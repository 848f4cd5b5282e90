//! Links `backupctl` with packed relative relocations (DT_RELR) where the
//! toolchain and C library support them.
//!
//! A position-independent Rust executable carries tens of thousands of
//! relative relocations (vtables, string slices in static data); as plain
//! `.rela.dyn` entries they are a megabyte that every command reads at
//! start. Packed, they take a few kilobytes: each command starts sooner and
//! holds about 1 MiB less. The executable stays position-independent.
//!
//! The option needs GNU ld 2.38 or lld, and glibc 2.36 or later at run
//! time: a probe program linked with the same C compiler and run decides,
//! so an older toolchain links as before (an older GNU ld ignores the
//! option anyway).

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    // Only for native Linux builds with glibc: a cross build's C compiler
    // and C library are not the ones a probe here would find.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if probe_links() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C compiler links a program with packed relocations and
/// the program runs.
fn probe_links() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr_probe.c");
    let program = out.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let compiler = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let quiet = |command: &mut Command| {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    quiet(
        Command::new(compiler)
            .arg("-Wl,-z,pack-relative-relocs")
            .arg("-o")
            .arg(&program)
            .arg(&source),
    ) && quiet(&mut Command::new(&program))
}
