//! The `tether` binary: parses arguments and hands each command to the library that implements
//! it.
//! Results are JSON on stdout with the same field names as the JSON-RPC results; an error is one
//! line on stderr carrying the message the JSON-RPC error would carry, and a non-zero exit.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand, ValueEnum};
use tether_device_key::{
    ProtectionPolicy, SignPayload, VerifyOptions, signed_payload_bytes, verify_signature,
};
use tether_server::{
    Config, ConfigOverrides, Home, Limits, ListenAddress, LogFormat, ServeOptions, WsAuthFlags,
    WsAuthMode, open_device_keys,
};

/// `--version` prints `tether <version> (codex app-server protocol <codex version>)`: tether's
/// own version first, so `<name> <semver>` stays the first two words a client parses, then the
/// version of the codex protocol it implements.
#[derive(Parser)]
#[command(
    name = "tether",
    version = concat!(env!("CARGO_PKG_VERSION"), " (codex app-server protocol 0.169.0)"),
    about = "A Codex-protocol app-server"
)]
struct Cli {
    /// Home directory (configuration, state database, key blobs). Default: $CODEX_HOME, else
    /// ~/.tether.
    #[arg(long, global = true, env = "TETHER_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Override a config.toml setting: a dotted path, `=`, and a TOML value (text that is not
    /// TOML is taken as a string), e.g. `-c model=gpt-5` or `-c model_providers.x.base_url="…"`.
    /// Repeatable; a later one wins.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        value_name = "key=value",
        action = clap::ArgAction::Append
    )]
    config_overrides: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the app-server.
    Serve(ServeArgs),
    /// Run the app-server, under the name codex clients use to start one (same as `serve`).
    AppServer(ServeArgs),
    /// Hardware-bound device keys.
    #[command(subcommand)]
    DeviceKey(DeviceKeyCommand),
    /// Show what a running server is doing (asks it over its unix control socket).
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// The control socket (default: the one under the home directory).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Write the JSON Schema of every message tether speaks.
    Schema {
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// stdio://, unix://[PATH] or ws://IP:PORT; repeat for several.
    #[arg(long = "listen", value_name = "URL", default_value = "stdio://")]
    listen: Vec<ListenAddress>,
    /// Largest frame a client may send, in bytes.
    #[arg(long, default_value_t = Limits::default().max_frame_bytes)]
    max_frame_bytes: usize,
    /// Requests queued per connection before new ones get "Server overloaded".
    #[arg(long, default_value_t = Limits::default().inbound_queue)]
    max_queued_requests: usize,
    /// Bytes queued for any one client before it is closed as too slow (a stdio client's
    /// closing ends the process with status 1).
    #[arg(long, default_value_t = Limits::default().outbound_queue_bytes)]
    outbound_queue_bytes: usize,
    /// How WebSocket clients authenticate (required for non-loopback listeners).
    #[arg(long, value_enum)]
    ws_auth: Option<WsAuthArg>,
    /// capability-token: file holding the token.
    #[arg(long, value_name = "FILE")]
    ws_token_file: Option<PathBuf>,
    /// capability-token: SHA-256 of the token, hex.
    #[arg(long, value_name = "HEX")]
    ws_token_sha256: Option<String>,
    /// signed-bearer-token: file holding the HS256 shared secret.
    #[arg(long, value_name = "FILE")]
    ws_shared_secret_file: Option<PathBuf>,
    /// signed-bearer-token: required `iss`.
    #[arg(long)]
    ws_issuer: Option<String>,
    /// signed-bearer-token: required `aud`.
    #[arg(long)]
    ws_audience: Option<String>,
    /// signed-bearer-token: tolerance for `exp` and `nbf` (default 30).
    #[arg(long)]
    ws_max_clock_skew_seconds: Option<u64>,
    /// Log lines for people or as JSON (to stderr; `RUST_LOG` filters them).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormatArg,
    /// Seconds shutdown waits for in-flight requests.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum WsAuthArg {
    CapabilityToken,
    SignedBearerToken,
}

#[derive(Subcommand)]
enum DeviceKeyCommand {
    /// Create a key bound to an account and a client.
    Create {
        #[arg(long)]
        account_user_id: String,
        #[arg(long)]
        client_id: String,
        #[arg(long, value_enum)]
        protection_policy: Option<PolicyArg>,
    },
    /// Print a key's public half.
    Public {
        #[arg(long)]
        key_id: String,
    },
    /// Sign the payload (a DeviceKeySignPayload as JSON) read from stdin.
    Sign {
        #[arg(long)]
        key_id: String,
    },
    /// Write the exact bytes that signing the payload on stdin would sign (no freshness check).
    PayloadBytes,
    /// Check a signature: exit 0 valid, 1 invalid, 2 bad input.
    Verify {
        #[arg(long)]
        public_key_spki_der_base64: String,
        #[arg(long)]
        signature_der_base64: String,
        #[arg(long)]
        signed_payload_base64: String,
        /// Also refuse signatures that are not low-S normalized.
        #[arg(long)]
        reject_high_s: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
enum PolicyArg {
    HardwareOnly,
    AllowOsProtectedNonextractable,
}

impl From<PolicyArg> for ProtectionPolicy {
    fn from(arg: PolicyArg) -> Self {
        match arg {
            PolicyArg::HardwareOnly => ProtectionPolicy::HardwareOnly,
            PolicyArg::AllowOsProtectedNonextractable => {
                ProtectionPolicy::AllowOsProtectedNonextractable
            }
        }
    }
}

/// A failed command: the line for stderr and the exit status.
struct Failure {
    message: String,
    status: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            message: error.to_string(),
            status: 1,
        }
    }
}

fn main() -> ExitCode {
    // The sandbox runs this binary again inside bubblewrap to apply seccomp and exec the
    // command; that hidden entry point never reaches the argument parser.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|first| first == tether_exec::SANDBOX_EXEC_SUBCOMMAND)
    {
        tether_exec::sandbox_exec_main(args);
    }
    let cli = Cli::parse();
    let home = Home::resolve(cli.home);
    let overrides = match ConfigOverrides::parse(&cli.config_overrides) {
        Ok(overrides) => overrides,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let settings = Settings { home, overrides };
    let home = &settings.home;
    let outcome = match cli.command {
        Command::Serve(args) | Command::AppServer(args) => serve(&settings, args),
        Command::DeviceKey(command) => device_key(&settings, command),
        Command::Status { json, socket } => status(home, json, socket),
        Command::Schema { out } => tether_server::write_schemas(&out)
            .map(|files| println!("wrote {} schema files to {}", files.len(), out.display()))
            .map_err(Failure::from),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message.replace('\n', " "));
            ExitCode::from(failure.status)
        }
    }
}

/// Where the configuration comes from: the home's config.toml with the `-c` overrides on top.
struct Settings {
    home: Home,
    overrides: ConfigOverrides,
}

impl Settings {
    /// Reads the configuration (only the commands that use it do, so a broken file does not stop
    /// the others).
    fn config(&self) -> Result<Config, tether_server::ConfigError> {
        Config::load_with_overrides(&self.home.config_file(), &self.overrides, |name| {
            std::env::var(name).ok()
        })
    }
}

fn serve(settings: &Settings, args: ServeArgs) -> Result<(), Failure> {
    let format = match args.log_format {
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    };
    let config = settings.config()?;
    let home = settings.home.clone();
    let telemetry = tether_server::init_logging(
        std::env::var("RUST_LOG").ok().as_deref(),
        format,
        config.otel.endpoint.as_deref(),
    );
    let ws_auth = WsAuthFlags {
        mode: args.ws_auth.map(|mode| match mode {
            WsAuthArg::CapabilityToken => WsAuthMode::CapabilityToken,
            WsAuthArg::SignedBearerToken => WsAuthMode::SignedBearerToken,
        }),
        token_file: args.ws_token_file,
        token_sha256: args.ws_token_sha256,
        shared_secret_file: args.ws_shared_secret_file,
        issuer: args.ws_issuer,
        audience: args.ws_audience,
        max_clock_skew_seconds: args.ws_max_clock_skew_seconds,
    };
    let options = ServeOptions {
        config,
        overrides: settings.overrides.clone(),
        home,
        listen: args.listen,
        limits: Limits {
            max_frame_bytes: args.max_frame_bytes,
            inbound_queue: args.max_queued_requests,
            outbound_queue_bytes: args.outbound_queue_bytes,
        },
        ws_auth,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        sandbox_helper: std::env::current_exe()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(tether_server::serve(options));
    // The stdin reader may be parked in a blocking read that nothing can interrupt.
    runtime.shutdown_timeout(Duration::from_millis(100));
    telemetry.shutdown();
    Ok(served?)
}

fn status(home: &Home, json: bool, socket: Option<PathBuf>) -> Result<(), Failure> {
    let socket = socket.unwrap_or_else(|| home.control_socket());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(tether_server::query_status(&socket))?;
    if json {
        print_json(&status);
    } else {
        print!("{}", tether_server::render_status(&status));
    }
    Ok(())
}

fn device_key(settings: &Settings, command: DeviceKeyCommand) -> Result<(), Failure> {
    match command {
        DeviceKeyCommand::PayloadBytes => {
            let bytes = signed_payload_bytes(&read_payload()?)?;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        DeviceKeyCommand::Verify {
            public_key_spki_der_base64,
            signature_der_base64,
            signed_payload_base64,
            reject_high_s,
        } => verify(
            &public_key_spki_der_base64,
            &signature_der_base64,
            &signed_payload_base64,
            reject_high_s,
        ),
        DeviceKeyCommand::Create {
            account_user_id,
            client_id,
            protection_policy,
        } => with_store(settings, async |keys| {
            keys.create(
                &account_user_id,
                &client_id,
                protection_policy.map(Into::into),
            )
            .await
            .map(|info| print_json(&info))
        }),
        DeviceKeyCommand::Public { key_id } => with_store(settings, async |keys| {
            keys.get_public(&key_id).await.map(|info| print_json(&info))
        }),
        DeviceKeyCommand::Sign { key_id } => {
            let payload = read_payload()?;
            with_store(settings, async |keys| {
                keys.sign(&key_id, &payload)
                    .await
                    .map(|signature| print_json(&signature))
            })
        }
    }
}

fn with_store<F>(settings: &Settings, operation: F) -> Result<(), Failure>
where
    F: AsyncFnOnce(&tether_server::DeviceKeys) -> Result<(), tether_device_key::DeviceKeyError>,
{
    let config = settings.config()?;
    let keys = open_device_keys(&settings.home, &config.device_keys)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(operation(&keys))?;
    Ok(())
}

fn read_payload() -> Result<SignPayload, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    serde_json::from_str(&text).map_err(|err| Failure::from(format!("Invalid request: {err}")))
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("results serialize")
    );
}

fn verify(spki: &str, signature: &str, signed: &str, reject_high_s: bool) -> Result<(), Failure> {
    let bad_input = |what: &str| Failure {
        message: format!("{what} is not standard base64"),
        status: 2,
    };
    let spki = STANDARD
        .decode(spki)
        .map_err(|_| bad_input("--public-key-spki-der-base64"))?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| bad_input("--signature-der-base64"))?;
    let signed = STANDARD
        .decode(signed)
        .map_err(|_| bad_input("--signed-payload-base64"))?;
    let options = VerifyOptions {
        reject_high_s,
        expected_payload: None,
    };
    match verify_signature(&spki, &signature, &signed, options) {
        Ok(()) => {
            println!("valid");
            Ok(())
        }
        Err(err) => Err(Failure {
            message: err.to_string(),
            status: if err.is_malformed_input() { 2 } else { 1 },
        }),
    }
}
