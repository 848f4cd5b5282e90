//! Security: secrets never shown by `Debug` or errors, keys zeroized on
//! drop, and a wrong password, a tampered key file or a tampered config
//! refused with clear errors.

use std::sync::Arc;

use backup_core::internals::config::{KeyFile, RepoConfig};
use backup_core::internals::crypto::MasterKey;
use backup_core::{Error, InitOptions, KdfParams, MemorySink, PutMode, Repository, Sink, SinkExt};

const PASSWORD: &str = "hunter2-very-secret-passphrase";

async fn encrypted_repo() -> Arc<dyn Sink> {
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    Repository::init(
        sink.clone(),
        InitOptions::default()
            .with_password(PASSWORD.as_bytes().to_vec())
            .with_kdf(KdfParams::insecure_for_tests()),
    )
    .await
    .unwrap();
    sink
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
    let hex: String = PASSWORD.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!text.contains(&hex), "{what} shows the password in hex");
    // Bytes as a Debug list (`[104, 117, ...]`).
    let list = format!("{:?}", PASSWORD.as_bytes());
    assert!(
        !text.contains(&list[1..20]),
        "{what} shows the password's bytes"
    );
}

fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}

#[tokio::test]
async fn debug_output_and_errors_never_show_secrets() {
    let options = InitOptions::default()
        .with_password(PASSWORD.as_bytes().to_vec())
        .with_kdf(KdfParams::insecure_for_tests());
    assert_no_secret("InitOptions Debug", &format!("{options:?}"));
    assert!(format!("{options:?}").contains("<redacted>"));

    let key = MasterKey::generate();
    let shown = format!("{key:?}");
    assert_eq!(shown, "MasterKey(<redacted>)");

    // Every error a password can cause, in Display and Debug.
    let sink = encrypted_repo().await;
    let repo = Repository::open(sink.clone(), Some(PASSWORD.as_bytes()))
        .await
        .unwrap();
    assert_no_secret("Repository Debug", &format!("{:?}", repo.config()));
    let mut errors = vec![
        Repository::open(sink.clone(), Some(b"wrong"))
            .await
            .err()
            .unwrap(),
        Repository::open(sink.clone(), None).await.err().unwrap(),
    ];
    let plain: Arc<dyn Sink> = Arc::new(MemorySink::new());
    Repository::init(plain.clone(), InitOptions::default())
        .await
        .unwrap();
    errors.push(
        Repository::open(plain, Some(PASSWORD.as_bytes()))
            .await
            .err()
            .unwrap(),
    );
    for error in &errors {
        assert_no_secret("error", &error.to_string());
        assert_no_secret("error Debug", &format!("{error:?}"));
    }
    println!(
        "secrets: {} Debug outputs and {} errors checked",
        4,
        errors.len() * 2
    );
}

#[test]
fn keys_are_zeroized_on_drop() {
    // The master key type wipes itself when dropped (and on demand).
    zeroize_on_drop::<MasterKey>();
    zeroize_on_drop::<zeroize::Zeroizing<Vec<u8>>>();
}

#[tokio::test]
async fn wrong_password_tampered_key_and_tampered_config_are_refused() {
    let sink = encrypted_repo().await;
    let mut trials = 0;

    // A wrong password.
    let error = Repository::open(sink.clone(), Some(b"not the password"))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::WrongPassword), "{error}");
    assert!(error.to_string().contains("wrong password"));
    trials += 1;

    let keys = sink.list("keys/").await.unwrap();
    let key_name = keys[0].key.clone();
    let original_key = sink.get(&key_name).await.unwrap();
    let key_file = KeyFile::from_object(&key_name, &original_key).unwrap();
    let original_config = sink.get("config").await.unwrap();
    let config = RepoConfig::from_object(&original_config).unwrap();

    // Tampered key files, each a well-formed object (so only the crypto
    // can notice): weaker KDF parameters, another salt, a changed
    // ciphertext byte.
    let mut weaker = key_file.clone();
    weaker.params.memory_kib = weaker.params.memory_kib.max(16) / 2;
    let mut salted = key_file.clone();
    salted.salt = "00".repeat(salted.salt.len() / 2);
    let mut flipped = key_file.clone();
    let mut data = flipped.data.clone().into_bytes();
    data[10] = if data[10] == b'0' { b'1' } else { b'0' };
    flipped.data = String::from_utf8(data).unwrap();
    for (what, tampered) in [
        ("weaker KDF", weaker),
        ("salt", salted),
        ("ciphertext", flipped),
    ] {
        sink.put(
            &key_name,
            tampered.to_object().unwrap().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
        let error = Repository::open(sink.clone(), Some(PASSWORD.as_bytes()))
            .await
            .err()
            .unwrap_or_else(|| panic!("a key file with a tampered {what} opened"));
        assert!(
            error.to_string().contains("key file was modified")
                || error.to_string().contains(&key_name),
            "{what}: {error}"
        );
        trials += 1;
    }
    // A damaged key object (not well-formed): named.
    let mut damaged = original_key.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    sink.put(&key_name, damaged.into(), PutMode::Overwrite)
        .await
        .unwrap();
    let error = Repository::open(sink.clone(), Some(PASSWORD.as_bytes()))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains(&key_name), "{error}");
    trials += 1;
    sink.put(&key_name, original_key.clone(), PutMode::Overwrite)
        .await
        .unwrap();

    // Tampered configs, well-formed: other chunker parameters (which would
    // fingerprint the data), another compression level, encryption off.
    let mut chunker = config.clone();
    chunker.chunker.avg_size /= 2;
    chunker.chunker.min_size /= 2;
    let mut level = config.clone();
    level.compression_level = 19;
    let mut unencrypted = config.clone();
    unencrypted.encryption = None;
    for (what, tampered, expected) in [
        ("chunker", chunker, "config"),
        ("compression", level, "config"),
        ("encryption off", unencrypted, "not encrypted"),
    ] {
        sink.put(
            "config",
            tampered.to_object().unwrap().into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
        let error = Repository::open(sink.clone(), Some(PASSWORD.as_bytes()))
            .await
            .err()
            .unwrap_or_else(|| panic!("a config with tampered {what} opened"));
        assert!(error.to_string().contains(expected), "{what}: {error}");
        trials += 1;
    }
    // A damaged config object: named.
    let mut damaged = original_config.to_vec();
    damaged[12] ^= 0x40;
    sink.put("config", damaged.into(), PutMode::Overwrite)
        .await
        .unwrap();
    let error = Repository::open(sink.clone(), Some(PASSWORD.as_bytes()))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("config"), "{error}");
    trials += 1;

    // The untouched objects open again.
    sink.put("config", original_config, PutMode::Overwrite)
        .await
        .unwrap();
    Repository::open(sink, Some(PASSWORD.as_bytes()))
        .await
        .unwrap();
    println!("tampering: {trials} trials refused with clear errors");
}
