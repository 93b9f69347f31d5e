//! The `tether` binary as a user runs it: each command a separate process, against a private
//! swtpm and a real home directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tether_testkit::{Swtpm, connection_payload, unix_now};

struct Tether<'a> {
    home: &'a Path,
    tcti: String,
    allow_software_tpm: bool,
}

impl Tether<'_> {
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--home")
            .arg(self.home)
            .args(args)
            .env("TETHER_TPM_TCTI", &self.tcti)
            .env(
                "TETHER_ALLOW_SOFTWARE_TPM",
                if self.allow_software_tpm { "1" } else { "0" },
            )
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn json(&self, args: &[&str], stdin: &[u8]) -> Value {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "tether {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one line on stderr: {text:?}");
    text.trim_end().to_owned()
}

#[test]
fn create_then_public_sign_and_verify_in_later_processes() {
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let tether = Tether {
        home: home.path(),
        tcti: tpm.tcti(),
        allow_software_tpm: true,
    };

    let created = tether.json(
        &[
            "device-key",
            "create",
            "--account-user-id",
            "acct",
            "--client-id",
            "cli",
            "--protection-policy",
            "hardware_only",
        ],
        b"",
    );
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    assert_eq!(created["protectionClass"], "hardware_tpm");
    assert_eq!(created["algorithm"], "ecdsa_p256_sha256");
    let keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "algorithm",
            "keyId",
            "protectionClass",
            "publicKeySpkiDerBase64"
        ]
    );

    assert_eq!(
        tether.json(&["device-key", "public", "--key-id", &key_id], b""),
        created
    );

    let payload = connection_payload("acct", "cli").to_string();
    let signed = tether.json(
        &["device-key", "sign", "--key-id", &key_id],
        payload.as_bytes(),
    );
    let bytes = tether.run(&["device-key", "payload-bytes"], payload.as_bytes());
    assert!(bytes.status.success());
    assert_eq!(
        STANDARD.encode(&bytes.stdout),
        signed["signedPayloadBase64"].as_str().unwrap()
    );

    let verify = |signature: &str| {
        tether.run(
            &[
                "device-key",
                "verify",
                "--public-key-spki-der-base64",
                created["publicKeySpkiDerBase64"].as_str().unwrap(),
                "--signature-der-base64",
                signature,
                "--signed-payload-base64",
                signed["signedPayloadBase64"].as_str().unwrap(),
            ],
            b"",
        )
    };
    let good = verify(signed["signatureDerBase64"].as_str().unwrap());
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );

    // Another key's signature over the same bytes is invalid: exit 1.
    let other = tether.json(
        &[
            "device-key",
            "create",
            "--account-user-id",
            "acct",
            "--client-id",
            "cli",
        ],
        b"",
    );
    let other_signature = tether.json(
        &[
            "device-key",
            "sign",
            "--key-id",
            other["keyId"].as_str().unwrap(),
        ],
        payload.as_bytes(),
    );
    let wrong = verify(other_signature["signatureDerBase64"].as_str().unwrap());
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(stderr_line(&wrong), "signature does not verify");

    // Undecodable input: exit 2.
    let garbage = verify("not base64!");
    assert_eq!(garbage.status.code(), Some(2));
    let junk_der = verify(&STANDARD.encode(b"junk"));
    assert_eq!(junk_der.status.code(), Some(2));
}

#[test]
fn payload_bytes_matches_the_spec_vector_exactly() {
    let home = tempfile::tempdir().unwrap();
    let tether = Tether {
        home: home.path(),
        tcti: "device:/nonexistent".into(),
        allow_software_tpm: false,
    };
    // Expired long ago: payload-bytes does not check freshness.
    let payload = json!({
        "type": "remoteControlClientEnrollment",
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "audience": "remote_control_client_enrollment",
        "challengeId": "rch_123",
        "targetOrigin": "https://chatgpt.com",
        "targetPath": "/wham/remote/control/client/enroll",
        "accountUserId": "account-user-1",
        "clientId": "cli_123",
        "deviceIdentitySha256Base64url": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
        "challengeExpiresAt": 1700000060
    });
    let output = tether.run(
        &["device-key", "payload-bytes"],
        payload.to_string().as_bytes(),
    );
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        r#"{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"account-user-1","audience":"remote_control_client_enrollment","challengeExpiresAt":1700000060,"challengeId":"rch_123","clientId":"cli_123","deviceIdentitySha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","targetOrigin":"https://chatgpt.com","targetPath":"/wham/remote/control/client/enroll","type":"remoteControlClientEnrollment"}}"#
    );
    assert!(
        !home.path().join("state.sqlite").exists(),
        "payload-bytes touches no state"
    );
}

#[test]
fn errors_are_one_line_with_the_rpc_message() {
    let tpm = Swtpm::start();
    let home = tempfile::tempdir().unwrap();
    let refused = Tether {
        home: home.path(),
        tcti: tpm.tcti(),
        allow_software_tpm: false,
    };
    let output = refused.run(
        &[
            "device-key",
            "create",
            "--account-user-id",
            "a",
            "--client-id",
            "c",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_line(&output),
        "hardware-backed device keys are not available on this platform"
    );
    assert!(output.stdout.is_empty());

    let tether = Tether {
        allow_software_tpm: true,
        ..refused
    };
    let cases: [(&[&str], Value, &str); 5] = [
        (
            &[
                "device-key",
                "create",
                "--account-user-id",
                "",
                "--client-id",
                "c",
            ],
            Value::Null,
            "invalid device key payload: accountUserId must not be empty",
        ),
        (
            &[
                "device-key",
                "public",
                "--key-id",
                "dk_tpm_../../etc/passwd",
            ],
            Value::Null,
            "invalid device key payload: keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes",
        ),
        (
            &[
                "device-key",
                "public",
                "--key-id",
                "dk_tpm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ],
            Value::Null,
            "device key not found",
        ),
        (
            &[
                "device-key",
                "sign",
                "--key-id",
                "dk_tpm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ],
            connection_payload("a", "c"),
            "device key not found",
        ),
        (
            &[
                "device-key",
                "sign",
                "--key-id",
                "dk_tpm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ],
            {
                let mut p = connection_payload("a", "c");
                p["tokenExpiresAt"] = json!(unix_now() - 10);
                p
            },
            "invalid device key payload: remote-control token is expired",
        ),
    ];
    for (args, stdin, message) in cases {
        let output = tether.run(args, stdin.to_string().as_bytes());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr_line(&output), message, "{args:?}");
    }
    let malformed = tether.run(
        &[
            "device-key",
            "sign",
            "--key-id",
            "dk_tpm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        b"{\"type\":\"nope\"}",
    );
    assert!(stderr_line(&malformed).starts_with("Invalid request: unknown variant `nope`"));
}

#[test]
fn a_corrupt_state_database_is_named_not_replaced() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.sqlite");
    std::fs::write(&db, vec![0xAB; 4096]).unwrap();
    let tether = Tether {
        home: home.path(),
        tcti: "device:/nonexistent".into(),
        allow_software_tpm: false,
    };
    let output = tether.run(
        &[
            "device-key",
            "public",
            "--key-id",
            "dk_tpm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(
        line.starts_with("device key platform error: state database "),
        "{line}"
    );
    assert!(
        line.contains(db.to_str().unwrap()) && line.contains("corrupt"),
        "{line}"
    );
    assert!(
        std::fs::read(&db).unwrap() == vec![0xAB; 4096],
        "the file was left as it was"
    );
}

/// `tether schema` writes the params and result of every client request in the protocol table,
/// the params of every notification and the params and answer of every server request, each a
/// valid JSON Schema.
#[test]
fn schema_covers_every_method_in_the_tables() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["schema", "--out"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for spec in tether_protocol::CLIENT_METHODS {
        let dir = if spec.name == "initialize" {
            "v1"
        } else {
            "v2"
        };
        for part in ["Params", "Response"] {
            let path = out.path().join(format!("{dir}/{}{part}.json", spec.stem));
            let schema: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("{} ({}): {err}", path.display(), spec.name)),
            )
            .unwrap();
            assert!(schema.is_object(), "{}", path.display());
        }
    }
    let files = walk(out.path());
    let expected = 3
        + 2 * tether_protocol::CLIENT_METHODS.len()
        + tether_protocol::SERVER_NOTIFICATIONS.len()
        + 2 * tether_protocol::SERVER_REQUESTS.len();
    assert_eq!(files.len(), expected, "{files:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
