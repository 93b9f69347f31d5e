//! The `os_protected_nonextractable` class through a real isolated token: SoftHSM2 behind
//! `p11-kit server` running as its own user, reached through `p11-kit-client.so`; every command a
//! separate `tether` process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_testkit::{IsolatedToken, Swtpm, TOKEN_USER, client_module, softhsm_module};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

struct Setup<'a> {
    home: tempfile::TempDir,
    token: Option<&'a IsolatedToken>,
    tpm: Option<&'a Swtpm>,
    allow_software_tpm: bool,
    /// Extra environment for every command.
    env: Vec<(&'static str, PathBuf)>,
}

impl Setup<'_> {
    fn new<'a>(
        token: Option<&'a IsolatedToken>,
        tpm: Option<&'a Swtpm>,
        extra_config: &str,
    ) -> Setup<'a> {
        let home = tempfile::tempdir().unwrap();
        let mut config = "[device_keys]\n".to_owned();
        if let Some(token) = token {
            config.push_str(&format!(
                "pkcs11_module = \"{}\"\npkcs11_pin_file = \"{}\"\n",
                client_module().display(),
                token.pin_file().display()
            ));
        }
        config.push_str(extra_config);
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        Setup {
            home,
            token,
            tpm,
            allow_software_tpm: true,
            env: Vec::new(),
        }
    }

    fn with_env(mut self, name: &'static str, value: PathBuf) -> Self {
        self.env.push((name, value));
        self
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(TETHER);
        command
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .env("TSS2_LOG", "all+none");
        command.env(
            "TETHER_TPM_TCTI",
            self.tpm
                .map(Swtpm::tcti)
                .unwrap_or_else(|| "device:/dev/no-tpm-here".into()),
        );
        command.env(
            "TETHER_ALLOW_SOFTWARE_TPM",
            if self.allow_software_tpm { "1" } else { "0" },
        );
        if let Some(token) = self.token {
            command.env("P11_KIT_SERVER_ADDRESS", token.server_address());
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn create(&self, policy: &str) -> Result<Value, String> {
        let output = self.run(
            &[
                "device-key",
                "create",
                "--account-user-id",
                "acct",
                "--client-id",
                "cli",
                "--protection-policy",
                policy,
            ],
            "",
        );
        if output.status.success() {
            Ok(serde_json::from_slice(&output.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

fn payload() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "type": "remoteControlClientEnrollment",
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "audience": "remote_control_client_enrollment",
        "challengeId": "rch_1",
        "targetOrigin": "https://chatgpt.com",
        "targetPath": "/wham/remote/control/client/enroll",
        "accountUserId": "acct",
        "clientId": "cli",
        "deviceIdentitySha256Base64url": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
        "challengeExpiresAt": now + 120
    })
    .to_string()
}

const DEGRADED: &str = "hardware-backed device keys are not available; set protectionPolicy to allow_os_protected_nonextractable to allow key protection class os_protected_nonextractable";
const UNAVAILABLE: &str = "hardware-backed device keys are not available on this platform";

#[test]
fn create_public_sign_verify_through_the_isolated_token_across_processes() {
    let token = IsolatedToken::start();
    let setup = Setup::new(Some(&token), None, "");
    let created = setup.create("allow_os_protected_nonextractable").unwrap();
    assert_eq!(created["protectionClass"], "os_protected_nonextractable");
    let key_id = created["keyId"].as_str().unwrap();
    assert!(key_id.starts_with("dk_osn_"));
    // Later processes find the key.
    let public = setup.run(&["device-key", "public", "--key-id", key_id], "");
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&public.stdout).unwrap(),
        created
    );
    let signed = setup.run(&["device-key", "sign", "--key-id", key_id], &payload());
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let signed: Value = serde_json::from_slice(&signed.stdout).unwrap();
    // openssl verifies the signature over the returned bytes.
    let scratch = tempfile::tempdir().unwrap();
    let decode = |b64: &str, name: &str| {
        let path = scratch.path().join(name);
        let output = Command::new("openssl")
            .args(["base64", "-d", "-A"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(b64.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        std::fs::write(&path, output.stdout).unwrap();
        path
    };
    let spki = decode(
        created["publicKeySpkiDerBase64"].as_str().unwrap(),
        "key.der",
    );
    let signature = decode(signed["signatureDerBase64"].as_str().unwrap(), "sig.der");
    let message = decode(signed["signedPayloadBase64"].as_str().unwrap(), "msg.bin");
    let pem = scratch.path().join("key.pem");
    assert!(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&spki)
            .arg("-out")
            .arg(&pem)
            .status()
            .unwrap()
            .success()
    );
    let verified = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&signature)
        .arg(&message)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&verified.stdout).contains("Verified OK"));
    // The key material is the token user's alone.
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let tokens = std::fs::metadata(token.token_dir()).unwrap();
    assert_eq!(tokens.permissions().mode() & 0o777, 0o700);
    let owner = Command::new("id")
        .args(["-u", TOKEN_USER])
        .output()
        .unwrap();
    assert_eq!(
        tokens.uid().to_string(),
        String::from_utf8_lossy(&owner.stdout).trim()
    );
    assert_eq!(token.object_count(), 2, "a private and a public object");
}

#[test]
fn the_policy_matrix() {
    let token = IsolatedToken::start();
    let tpm = Swtpm::start();
    // Only the token: hardware_only is refused with the class that exists.
    let only_token = Setup::new(Some(&token), None, "");
    assert_eq!(only_token.create("hardware_only").unwrap_err(), DEGRADED);
    assert_eq!(
        only_token
            .create("allow_os_protected_nonextractable")
            .unwrap()["protectionClass"],
        "os_protected_nonextractable"
    );
    // A usable TPM wins under either policy.
    let both = Setup::new(Some(&token), Some(&tpm), "");
    for policy in ["hardware_only", "allow_os_protected_nonextractable"] {
        assert_eq!(
            both.create(policy).unwrap()["protectionClass"],
            "hardware_tpm",
            "{policy}"
        );
    }
    // A TPM that may not be used (software, not allowed) does not count.
    let mut refused_tpm = Setup::new(Some(&token), Some(&tpm), "");
    refused_tpm.allow_software_tpm = false;
    assert_eq!(
        refused_tpm
            .create("allow_os_protected_nonextractable")
            .unwrap()["protectionClass"],
        "os_protected_nonextractable"
    );
    assert_eq!(refused_tpm.create("hardware_only").unwrap_err(), DEGRADED);
    // Nothing at all.
    let nothing = Setup::new(None, None, "");
    for policy in ["hardware_only", "allow_os_protected_nonextractable"] {
        assert_eq!(nothing.create(policy).unwrap_err(), UNAVAILABLE, "{policy}");
    }
}

#[test]
fn an_in_process_token_is_refused_unless_allowed() {
    let token = IsolatedToken::start();
    let softhsm_conf = token.path().join("softhsm2.conf");
    let in_process = format!(
        "pkcs11_module = \"{}\"\npkcs11_pin_file = \"{}\"\n",
        softhsm_module().display(),
        token.pin_file().display()
    );
    // The token itself works (its configuration is given); only the check refuses it.
    let refused =
        Setup::new(None, None, &in_process).with_env("SOFTHSM2_CONF", softhsm_conf.clone());
    assert_eq!(
        refused
            .create("allow_os_protected_nonextractable")
            .unwrap_err(),
        UNAVAILABLE
    );
    let allowed = Setup::new(
        None,
        None,
        &format!("{in_process}allow_in_process_token = true\n"),
    )
    .with_env("SOFTHSM2_CONF", softhsm_conf);
    let created = allowed.create("allow_os_protected_nonextractable").unwrap();
    assert_eq!(created["protectionClass"], "os_protected_nonextractable");
}

#[test]
fn a_failed_binding_write_destroys_the_new_token_key() {
    let token = IsolatedToken::start();
    let setup = Setup::new(Some(&token), None, "");
    setup.create("allow_os_protected_nonextractable").unwrap();
    assert_eq!(token.object_count(), 2);
    let holder = rusqlite::Connection::open(setup.home.path().join("state.sqlite")).unwrap();
    holder
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM device_key_bindings WHERE 0;")
        .unwrap();
    let error = setup
        .create("allow_os_protected_nonextractable")
        .unwrap_err();
    assert!(
        error.starts_with("device key platform error: state database ") && error.contains("locked"),
        "{error}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(token.object_count(), 2, "the second key was destroyed");
}

#[test]
fn each_test_gets_its_own_token() {
    let first = IsolatedToken::start();
    let second = IsolatedToken::start();
    assert_ne!(first.server_address(), second.server_address());
    assert!(Path::new(&first.server_address()["unix:path=".len()..]).exists());
}
