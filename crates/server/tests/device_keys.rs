//! Device keys through the real parts: the TPM provider against a private swtpm per test, and
//! bindings in a real SQLite file.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tether_device_key::tpm::{TpmProvider, TpmSettings};
use tether_device_key::{
    ConnectionAudience, ConnectionPayload, DeviceKeyError, DeviceKeyInfo, DeviceKeySignature,
    DeviceKeyStore, EnrollmentAudience, EnrollmentPayload, ProtectionClass, ProtectionPolicy,
    SignPayload, VerifyOptions, verify_signature,
};
use tether_server::{DeviceKeys, DeviceKeysConfig, Home, open_device_keys};
use tether_state::{StateDb, StateOptions};
use tether_testkit::{Swtpm, unix_now};

struct Fixture {
    tpm: Swtpm,
    home: Home,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tpm = Swtpm::start();
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().join("home")));
        Fixture {
            tpm,
            home,
            _dir: dir,
        }
    }

    fn config(&self, allow_software_tpm: bool) -> DeviceKeysConfig {
        DeviceKeysConfig {
            tpm_tcti: Some(self.tpm.tcti()),
            allow_software_tpm,
            ..DeviceKeysConfig::default()
        }
    }

    fn keys(&self) -> DeviceKeys {
        open_device_keys(&self.home, &self.config(true)).unwrap()
    }

    fn blob_count(&self) -> usize {
        match std::fs::read_dir(self.home.tpm_key_dir()) {
            Ok(entries) => entries.count(),
            Err(_) => 0,
        }
    }

    fn binding_count(&self) -> i64 {
        let raw = rusqlite::Connection::open(self.home.state_db()).unwrap();
        raw.query_row("SELECT count(*) FROM device_key_bindings", [], |r| r.get(0))
            .unwrap()
    }
}

const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const DIGEST: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

fn connection(account: &str, client: &str, session: &str) -> SignPayload {
    SignPayload::Connection(ConnectionPayload {
        nonce: NONCE.into(),
        audience: ConnectionAudience::RemoteControlClientWebsocket,
        session_id: session.into(),
        target_origin: "https://chatgpt.com".into(),
        target_path: "/api/codex/remote/control/client".into(),
        account_user_id: account.into(),
        client_id: client.into(),
        token_expires_at: unix_now() + 300,
        token_sha256_base64url: DIGEST.into(),
        scopes: vec!["remote_control_controller_websocket".into()],
    })
}

fn enrollment(account: &str, client: &str) -> SignPayload {
    SignPayload::Enrollment(EnrollmentPayload {
        nonce: NONCE.into(),
        audience: EnrollmentAudience::RemoteControlClientEnrollment,
        challenge_id: "rch_1".into(),
        target_origin: "http://127.0.0.1:8080".into(),
        target_path: "/api/codex/remote/control/client/enroll".into(),
        account_user_id: account.into(),
        client_id: client.into(),
        device_identity_sha256_base64url: DIGEST.into(),
        challenge_expires_at: unix_now() + 60,
    })
}

fn verify(info: &DeviceKeyInfo, signature: &DeviceKeySignature, expected: &SignPayload) {
    let options = VerifyOptions {
        reject_high_s: false,
        expected_payload: Some(expected),
    };
    verify_signature(
        &STANDARD.decode(&info.public_key_spki_der_base64).unwrap(),
        &STANDARD.decode(&signature.signature_der_base64).unwrap(),
        &STANDARD.decode(&signature.signed_payload_base64).unwrap(),
        options,
    )
    .expect("signature verifies with p256");
}

/// `openssl dgst -sha256 -verify` on files: an independent verifier.
fn openssl_verifies(dir: &Path, info: &DeviceKeyInfo, signature: &DeviceKeySignature) -> bool {
    let write = |name: &str, b64: &str| {
        let path = dir.join(name);
        std::fs::write(&path, STANDARD.decode(b64).unwrap()).unwrap();
        path
    };
    let spki = write("key.der", &info.public_key_spki_der_base64);
    let sig = write("sig.der", &signature.signature_der_base64);
    let msg = write("msg.bin", &signature.signed_payload_base64);
    let pem = dir.join("key.pem");
    let converted = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&spki)
        .arg("-out")
        .arg(&pem)
        .status()
        .expect("openssl is needed: run scripts/setup.sh");
    assert!(converted.success());
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .unwrap();
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("Verified OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_public_sign_verify_with_p256_and_openssl() {
    let fixture = Fixture::new();
    let keys = fixture.keys();
    let created = keys
        .create("acct-1", "cli-1", Some(ProtectionPolicy::HardwareOnly))
        .await
        .unwrap();
    assert_eq!(created.protection_class, ProtectionClass::HardwareTpm);
    assert!(created.key_id.starts_with("dk_tpm_") && created.key_id.len() == 50);
    assert_eq!(keys.get_public(&created.key_id).await.unwrap(), created);

    let scratch = tempfile::tempdir().unwrap();
    for payload in [
        connection("acct-1", "cli-1", "wssess_ü\n"),
        enrollment("acct-1", "cli-1"),
    ] {
        let signature = keys.sign(&created.key_id, &payload).await.unwrap();
        verify(&created, &signature, &payload);
        assert!(
            openssl_verifies(scratch.path(), &created, &signature),
            "openssl verifies"
        );
    }
    // A tampered message does not verify under openssl either.
    let signature = keys
        .sign(&created.key_id, &connection("acct-1", "cli-1", "s"))
        .await
        .unwrap();
    let mut tampered = signature.clone();
    let mut bytes = STANDARD.decode(&tampered.signed_payload_base64).unwrap();
    bytes[10] ^= 1;
    tampered.signed_payload_base64 = STANDARD.encode(bytes);
    assert!(!openssl_verifies(scratch.path(), &created, &tampered));

    // The blob is private and named by a hash, not by the id.
    let blobs: Vec<_> = std::fs::read_dir(fixture.home.tpm_key_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(blobs.len(), 1);
    let name = blobs[0].file_name().into_string().unwrap();
    assert!(!name.contains(&created.key_id[7..]), "{name}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        blobs[0].metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_finds_keys_made_by_an_earlier_one() {
    let fixture = Fixture::new();
    let created = fixture.keys().create("acct", "cli", None).await.unwrap();
    // A fresh provider and database connection, as after a restart.
    let keys = fixture.keys();
    assert_eq!(keys.get_public(&created.key_id).await.unwrap(), created);
    let payload = connection("acct", "cli", "s");
    verify(
        &created,
        &keys.sign(&created.key_id, &payload).await.unwrap(),
        &payload,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_signs_across_more_keys_than_the_tpm_holds() {
    let fixture = Fixture::new();
    let keys = fixture.keys();
    let mut created = Vec::new();
    for client in ["c0", "c1", "c2", "c3"] {
        created.push(keys.create("acct", client, None).await.unwrap());
    }
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let keys = keys.clone();
            let info = created[i % created.len()].clone();
            tokio::spawn(async move {
                let client = format!("c{}", i % 4);
                let payload = connection("acct", &client, &format!("session-{i}"));
                let signature = keys.sign(&info.key_id, &payload).await.unwrap();
                verify(&info, &signature, &payload);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_tpm_is_refused_without_the_flag() {
    let fixture = Fixture::new();
    let keys = open_device_keys(&fixture.home, &fixture.config(false)).unwrap();
    let err = keys.create("acct", "cli", None).await.unwrap_err();
    assert_eq!(err, DeviceKeyError::HardwareBackedKeysUnavailable);
    assert_eq!(err.jsonrpc_code(), -32600);
    assert_eq!(fixture.blob_count(), 0);
    assert_eq!(fixture.binding_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_tpm_means_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::resolve(Some(dir.path().to_owned()));
    for tcti in [
        "device:/dev/tpmrm-does-not-exist",
        "swtpm:host=127.0.0.1,port=1",
    ] {
        let config = DeviceKeysConfig {
            tpm_tcti: Some(tcti.into()),
            allow_software_tpm: true,
            ..DeviceKeysConfig::default()
        };
        let keys = open_device_keys(&home, &config).unwrap();
        let err = keys.create("acct", "cli", None).await.unwrap_err();
        assert_eq!(err, DeviceKeyError::HardwareBackedKeysUnavailable, "{tcti}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_binding_write_leaves_no_key_blob() {
    let fixture = Fixture::new();
    // Create the database, then have another process's writer hold its write lock.
    drop(fixture.keys());
    let holder = rusqlite::Connection::open(fixture.home.state_db()).unwrap();
    holder
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM device_key_bindings;")
        .unwrap();

    let state = StateDb::open_with(
        &fixture.home.state_db(),
        StateOptions {
            busy_timeout: Duration::from_millis(100),
        },
    )
    .unwrap();
    let provider = TpmProvider::new(TpmSettings {
        tcti: fixture.tpm.tcti(),
        allow_software_tpm: true,
        key_dir: fixture.home.tpm_key_dir(),
    });
    let keys = DeviceKeyStore::new(state, Arc::new(provider));
    let err = keys.create("acct", "cli", None).await.unwrap_err();
    assert!(matches!(err, DeviceKeyError::Platform(_)), "{err:?}");
    assert!(err.to_string().contains("is locked"), "{err}");
    assert_eq!(fixture.blob_count(), 0, "the new key's blob was deleted");

    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(fixture.binding_count(), 0);
    // The store is usable once the lock is gone.
    keys.create("acct", "cli", None).await.unwrap();
    assert_eq!((fixture.blob_count(), fixture.binding_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_blob_is_key_not_found_not_a_crash() {
    let fixture = Fixture::new();
    let keys = fixture.keys();
    let created = keys.create("acct", "cli", None).await.unwrap();
    for entry in std::fs::read_dir(fixture.home.tpm_key_dir()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let err = keys
        .sign(&created.key_id, &connection("acct", "cli", "s"))
        .await
        .unwrap_err();
    assert_eq!(err, DeviceKeyError::KeyNotFound);
}
