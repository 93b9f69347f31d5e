//! Device-key latency through the store (SQLite bindings + provider) against a private swtpm and
//! an isolated PKCS#11 token, and the throughput of the pure parts.
//! Run: `cargo bench -p tether-server --bench device_keys`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tether_device_key::{
    ConnectionAudience, ConnectionPayload, ProtectionPolicy, SignPayload, VerifyOptions,
    signed_payload_bytes, verify_signature,
};
use tether_server::{DeviceKeysConfig, Home, open_device_keys};
use tether_testkit::{IsolatedToken, Swtpm};

fn payload() -> SignPayload {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    SignPayload::Connection(ConnectionPayload {
        nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        audience: ConnectionAudience::RemoteControlClientWebsocket,
        session_id: "wssess_bench".into(),
        target_origin: "https://chatgpt.com".into(),
        target_path: "/api/codex/remote/control/client".into(),
        account_user_id: "acct".into(),
        client_id: "cli".into(),
        token_expires_at: now + 600,
        token_sha256_base64url: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into(),
        scopes: vec!["remote_control_controller_websocket".into()],
    })
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<28} n={:<5} min {:>7.3} ms  median {:>7.3} ms  p99 {:>7.3} ms",
        samples.len(),
        ms(samples[0]),
        ms(at(0.5)),
        ms(at(0.99)),
    );
}

fn throughput(name: &str, mut operation: impl FnMut()) {
    let budget = Duration::from_secs(1);
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < budget {
        operation();
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!("{name:<28} {rate:>10.0} ops/s ({:.2} µs each)", 1e6 / rate);
}

async fn timed<T>(future: impl Future<Output = T>) -> (Duration, T) {
    let started = Instant::now();
    let value = future.await;
    (started.elapsed(), value)
}

/// Set in the child process that measures the PKCS#11 token (the client module reads its
/// server address from the environment, which is the parent's to set).
const CHILD: &str = "TETHER_BENCH_PKCS11_PIN_FILE";

fn main() {
    if let Some(pin_file) = std::env::var_os(CHILD) {
        let config = DeviceKeysConfig {
            tpm_tcti: Some("device:/dev/no-tpm-here".into()),
            pkcs11_module: Some(tether_testkit::client_module()),
            pkcs11_pin_file: Some(pin_file.into()),
            ..DeviceKeysConfig::default()
        };
        println!("\n## os_protected_nonextractable: SoftHSM2 behind p11-kit server (another user)");
        measure(
            &config,
            Some(ProtectionPolicy::AllowOsProtectedNonextractable),
        );
        return;
    }
    let tpm = Swtpm::start();
    let config = DeviceKeysConfig {
        tpm_tcti: Some(tpm.tcti()),
        allow_software_tpm: true,
        ..DeviceKeysConfig::default()
    };
    println!("## hardware_tpm: swtpm");
    let (spki, der, signed) = measure(&config, None);
    let to_sign = payload();
    throughput("payload-bytes", || {
        std::hint::black_box(signed_payload_bytes(std::hint::black_box(&to_sign)).unwrap());
    });
    throughput("verify", || {
        verify_signature(&spki, &der, &signed, VerifyOptions::default()).unwrap();
    });
    let token = IsolatedToken::start();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, token.pin_file())
        .env("P11_KIT_SERVER_ADDRESS", token.server_address())
        .status()
        .unwrap();
    assert!(status.success(), "the PKCS#11 measurement failed");
}

/// Create, public and sign latency through the store with `config`; returns a signature and
/// what it covers, for the throughput measurements.
fn measure(
    config: &DeviceKeysConfig,
    policy: Option<ProtectionPolicy>,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::resolve(Some(dir.path().to_owned()));
    let keys = open_device_keys(&home, config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let to_sign = payload();
    let (first, created) = runtime.block_on(timed(keys.create("acct", "cli", policy)));
    let created = created.unwrap();
    println!(
        "first create (opens the provider): {:.3} ms",
        first.as_secs_f64() * 1e3
    );
    let mut samples = Vec::new();
    for _ in 0..50 {
        let (elapsed, result) = runtime.block_on(timed(keys.create("acct", "cli", policy)));
        result.unwrap();
        samples.push(elapsed);
    }
    report("create", samples);
    let mut samples = Vec::new();
    for _ in 0..500 {
        let (elapsed, result) = runtime.block_on(timed(keys.get_public(&created.key_id)));
        result.unwrap();
        samples.push(elapsed);
    }
    report("public", samples);
    let mut samples = Vec::new();
    for _ in 0..500 {
        let (elapsed, result) = runtime.block_on(timed(keys.sign(&created.key_id, &to_sign)));
        result.unwrap();
        samples.push(elapsed);
    }
    report("sign", samples);
    let signature = runtime
        .block_on(keys.sign(&created.key_id, &to_sign))
        .unwrap();
    (
        STANDARD
            .decode(&created.public_key_spki_der_base64)
            .unwrap(),
        STANDARD.decode(&signature.signature_der_base64).unwrap(),
        STANDARD.decode(&signature.signed_payload_base64).unwrap(),
    )
}
