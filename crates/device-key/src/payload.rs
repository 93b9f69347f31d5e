use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::DeviceKeyError;

/// A proof may expire at most this many seconds after it is signed.
pub const MAX_PROOF_TTL_SECONDS: i64 = 900;

const CONNECTION_PATHS: [&str; 2] = [
    "/api/codex/remote/control/client",
    "/wham/remote/control/client",
];
const ENROLLMENT_PATHS: [&str; 2] = [
    "/api/codex/remote/control/client/enroll",
    "/wham/remote/control/client/enroll",
];
const CONTROLLER_WEBSOCKET_SCOPE: &str = "remote_control_controller_websocket";
const MIN_NONCE_BYTES: usize = 32;
const SHA256_BYTES: usize = 32;

/// The only things a device key will sign, tagged by `type` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum SignPayload {
    /// Proof of key possession when opening a remote-control controller connection.
    #[serde(rename = "remoteControlClientConnection")]
    Connection(ConnectionPayload),
    /// Proof of key possession while enrolling the device for remote control.
    #[serde(rename = "remoteControlClientEnrollment")]
    Enrollment(EnrollmentPayload),
}

/// Audience of a connection proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionAudience {
    /// The remote-control client websocket.
    RemoteControlClientWebsocket,
}

/// Audience of an enrollment proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentAudience {
    /// The remote-control enrollment endpoint.
    RemoteControlClientEnrollment,
}

/// `remoteControlClientConnection` fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ConnectionPayload {
    pub nonce: String,
    pub audience: ConnectionAudience,
    pub session_id: String,
    pub target_origin: String,
    pub target_path: String,
    pub account_user_id: String,
    pub client_id: String,
    /// Unix seconds.
    pub token_expires_at: i64,
    pub token_sha256_base64url: String,
    pub scopes: Vec<String>,
}

/// `remoteControlClientEnrollment` fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct EnrollmentPayload {
    pub nonce: String,
    pub audience: EnrollmentAudience,
    pub challenge_id: String,
    pub target_origin: String,
    pub target_path: String,
    pub account_user_id: String,
    pub client_id: String,
    pub device_identity_sha256_base64url: String,
    /// Unix seconds.
    pub challenge_expires_at: i64,
}

impl SignPayload {
    /// The account the proof is for.
    pub fn account_user_id(&self) -> &str {
        match self {
            SignPayload::Connection(p) => &p.account_user_id,
            SignPayload::Enrollment(p) => &p.account_user_id,
        }
    }

    /// The client the proof is for.
    pub fn client_id(&self) -> &str {
        match self {
            SignPayload::Connection(p) => &p.client_id,
            SignPayload::Enrollment(p) => &p.client_id,
        }
    }

    /// Applies every field rule, in the documented order, against the clock reading `now`
    /// (Unix seconds). The first broken rule is the error.
    pub fn validate(&self, now: i64) -> Result<(), DeviceKeyError> {
        match self {
            SignPayload::Connection(p) => {
                check_nonce(&p.nonce)?;
                check_target(&p.target_origin, &p.target_path, &CONNECTION_PATHS)?;
                require(!p.session_id.is_empty(), "sessionId must not be empty")?;
                check_binding(&p.account_user_id, &p.client_id)?;
                require(
                    is_sha256_base64url(&p.token_sha256_base64url),
                    "tokenSha256Base64url must be a SHA-256 digest encoded as unpadded base64url",
                )?;
                require(
                    p.scopes == [CONTROLLER_WEBSOCKET_SCOPE],
                    "scopes must contain exactly remote_control_controller_websocket",
                )?;
                check_expiry(p.token_expires_at, now, "remote-control token")
            }
            SignPayload::Enrollment(p) => {
                check_nonce(&p.nonce)?;
                require(!p.challenge_id.is_empty(), "challengeId must not be empty")?;
                check_target(&p.target_origin, &p.target_path, &ENROLLMENT_PATHS)?;
                check_binding(&p.account_user_id, &p.client_id)?;
                require(
                    is_sha256_base64url(&p.device_identity_sha256_base64url),
                    "deviceIdentitySha256Base64url must be a SHA-256 digest encoded as unpadded base64url",
                )?;
                check_expiry(p.challenge_expires_at, now, "enrollment challenge")
            }
        }
    }
}

fn require(holds: bool, rule: &str) -> Result<(), DeviceKeyError> {
    if holds {
        Ok(())
    } else {
        Err(DeviceKeyError::invalid_payload(rule))
    }
}

/// The account and client a key is bound to must both be named: an empty value would match every
/// other empty value.
pub(crate) fn check_binding(account_user_id: &str, client_id: &str) -> Result<(), DeviceKeyError> {
    require(
        !account_user_id.is_empty(),
        "accountUserId must not be empty",
    )?;
    require(!client_id.is_empty(), "clientId must not be empty")
}

fn check_nonce(nonce: &str) -> Result<(), DeviceKeyError> {
    require(
        URL_SAFE_NO_PAD
            .decode(nonce)
            .is_ok_and(|bytes| bytes.len() >= MIN_NONCE_BYTES),
        "nonce must be at least 32 random bytes encoded as unpadded base64url",
    )
}

fn check_target(origin: &str, path: &str, allowed_paths: &[&str]) -> Result<(), DeviceKeyError> {
    require(
        is_allowed_origin(origin),
        "targetOrigin must be an allowed remote-control backend origin",
    )?;
    require(
        allowed_paths.contains(&path),
        "targetPath must match the signed payload type's remote-control endpoint",
    )
}

fn is_allowed_origin(origin: &str) -> bool {
    let Ok(url) = Url::parse(origin) else {
        return false;
    };
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return false;
    }
    let host = url.host();
    match url.scheme() {
        "https" => is_loopback(&host) || is_chatgpt(&host),
        "http" => is_loopback(&host),
        _ => false,
    }
}

fn is_chatgpt(host: &Option<Host<&str>>) -> bool {
    let Some(Host::Domain(name)) = host else {
        return false;
    };
    ["chatgpt.com", "chatgpt-staging.com"].iter().any(|domain| {
        *name == *domain
            || name
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

fn is_loopback(host: &Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(name)) => *name == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_sha256_base64url(text: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(text)
        .is_ok_and(|bytes| bytes.len() == SHA256_BYTES)
}

fn check_expiry(expires_at: i64, now: i64, what: &str) -> Result<(), DeviceKeyError> {
    if expires_at <= now {
        return Err(DeviceKeyError::InvalidPayload(format!("{what} is expired")));
    }
    if expires_at > now.saturating_add(MAX_PROOF_TTL_SECONDS) {
        return Err(DeviceKeyError::InvalidPayload(format!(
            "{what} expires too far in the future"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_vectors::{DIGEST, NONCE, connection, enrollment};

    /// A minute before the vectors' connection token expires.
    const NOW: i64 = 1_700_000_000 - 60;

    fn message(payload: SignPayload) -> String {
        payload.validate(NOW).unwrap_err().to_string()
    }

    fn conn_error(edit: impl FnOnce(&mut ConnectionPayload)) -> String {
        let mut p = connection();
        edit(&mut p);
        message(SignPayload::Connection(p))
    }

    fn enroll_error(edit: impl FnOnce(&mut EnrollmentPayload)) -> String {
        let mut p = enrollment();
        edit(&mut p);
        message(SignPayload::Enrollment(p))
    }

    const P: &str = "invalid device key payload: ";

    type Edit<T> = Box<dyn FnOnce(&mut T)>;

    #[test]
    fn valid_payloads_pass() {
        SignPayload::Connection(connection()).validate(NOW).unwrap();
        SignPayload::Enrollment(enrollment()).validate(NOW).unwrap();
    }

    #[test]
    fn every_connection_rule_has_its_message() {
        let cases: Vec<(Edit<ConnectionPayload>, &str)> = vec![
            (
                Box::new(|p| p.nonce = "AAAA".into()),
                "nonce must be at least 32 random bytes encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.nonce = format!("{NONCE}=")),
                "nonce must be at least 32 random bytes encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.nonce = NONCE.replace('A', "+")),
                "nonce must be at least 32 random bytes encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.target_origin = "https://evil.com".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "http://chatgpt.com".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "https://chatgpt.com/x".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "https://chatgpt.com/?q=1".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "https://chatgpt.com/#f".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "https://evilchatgpt.com".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "https://chatgpt.com.evil.com".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "http://10.0.0.1".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "not a url".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_origin = "wss://chatgpt.com".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_path = "/wham/remote/control/client/enroll".into()),
                "targetPath must match the signed payload type's remote-control endpoint",
            ),
            (
                Box::new(|p| p.target_path = "/api/codex/remote/control/client/".into()),
                "targetPath must match the signed payload type's remote-control endpoint",
            ),
            (
                Box::new(|p| p.session_id.clear()),
                "sessionId must not be empty",
            ),
            (
                Box::new(|p| p.account_user_id.clear()),
                "accountUserId must not be empty",
            ),
            (
                Box::new(|p| p.client_id.clear()),
                "clientId must not be empty",
            ),
            (
                Box::new(|p| p.token_sha256_base64url = "abc".into()),
                "tokenSha256Base64url must be a SHA-256 digest encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.token_sha256_base64url = format!("{DIGEST}=")),
                "tokenSha256Base64url must be a SHA-256 digest encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.scopes = vec![]),
                "scopes must contain exactly remote_control_controller_websocket",
            ),
            (
                Box::new(|p| p.scopes.push("remote_control_controller_websocket".into())),
                "scopes must contain exactly remote_control_controller_websocket",
            ),
            (
                Box::new(|p| p.scopes = vec!["admin".into()]),
                "scopes must contain exactly remote_control_controller_websocket",
            ),
            (
                Box::new(|p| p.token_expires_at = NOW),
                "remote-control token is expired",
            ),
            (
                Box::new(|p| p.token_expires_at = NOW - 1),
                "remote-control token is expired",
            ),
            (
                Box::new(|p| p.token_expires_at = NOW + 901),
                "remote-control token expires too far in the future",
            ),
            (
                Box::new(|p| p.token_expires_at = i64::MAX),
                "remote-control token expires too far in the future",
            ),
        ];
        for (edit, rule) in cases {
            assert_eq!(conn_error(edit), format!("{P}{rule}"));
        }
    }

    #[test]
    fn every_enrollment_rule_has_its_message() {
        let cases: Vec<(Edit<EnrollmentPayload>, &str)> = vec![
            (
                Box::new(|p| p.nonce.clear()),
                "nonce must be at least 32 random bytes encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.challenge_id.clear()),
                "challengeId must not be empty",
            ),
            (
                Box::new(|p| p.target_origin = "ftp://localhost".into()),
                "targetOrigin must be an allowed remote-control backend origin",
            ),
            (
                Box::new(|p| p.target_path = "/wham/remote/control/client".into()),
                "targetPath must match the signed payload type's remote-control endpoint",
            ),
            (
                Box::new(|p| p.account_user_id.clear()),
                "accountUserId must not be empty",
            ),
            (
                Box::new(|p| p.client_id.clear()),
                "clientId must not be empty",
            ),
            (
                Box::new(|p| p.device_identity_sha256_base64url = NONCE[..42].into()),
                "deviceIdentitySha256Base64url must be a SHA-256 digest encoded as unpadded base64url",
            ),
            (
                Box::new(|p| p.challenge_expires_at = NOW - 5),
                "enrollment challenge is expired",
            ),
            (
                Box::new(|p| p.challenge_expires_at = NOW + 901),
                "enrollment challenge expires too far in the future",
            ),
        ];
        for (edit, rule) in cases {
            assert_eq!(enroll_error(edit), format!("{P}{rule}"));
        }
    }

    #[test]
    fn rules_apply_in_the_documented_order() {
        // Everything broken at once: the nonce is reported first.
        let everything_wrong = |p: &mut ConnectionPayload| {
            p.nonce.clear();
            p.target_origin.clear();
            p.session_id.clear();
            p.account_user_id.clear();
            p.scopes.clear();
            p.token_expires_at = 0;
        };
        assert!(
            conn_error(everything_wrong)
                .ends_with("nonce must be at least 32 random bytes encoded as unpadded base64url")
        );
        assert!(
            conn_error(|p| {
                p.session_id.clear();
                p.target_path.clear()
            })
            .ends_with("targetPath must match the signed payload type's remote-control endpoint")
        );
        assert!(
            conn_error(|p| {
                p.session_id.clear();
                p.account_user_id.clear()
            })
            .ends_with("sessionId must not be empty")
        );
        assert!(
            conn_error(|p| {
                p.account_user_id.clear();
                p.client_id.clear()
            })
            .ends_with("accountUserId must not be empty")
        );
        assert!(
            conn_error(|p| {
                p.token_sha256_base64url.clear();
                p.scopes.clear()
            })
            .ends_with(
                "tokenSha256Base64url must be a SHA-256 digest encoded as unpadded base64url"
            )
        );
        assert!(
            conn_error(|p| {
                p.scopes.clear();
                p.token_expires_at = 0
            })
            .ends_with("scopes must contain exactly remote_control_controller_websocket")
        );
        // Enrollment checks the challenge id before the target.
        assert!(
            enroll_error(|p| {
                p.challenge_id.clear();
                p.target_origin.clear()
            })
            .ends_with("challengeId must not be empty")
        );
    }

    #[test]
    fn allowed_origins() {
        for origin in [
            "https://chatgpt.com",
            "https://chatgpt.com/",
            "https://chatgpt-staging.com",
            "https://ab.chatgpt.com",
            "https://x.y.chatgpt-staging.com",
            "https://chatgpt.com:8443",
            "http://localhost",
            "https://localhost:3000",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80",
        ] {
            assert!(is_allowed_origin(origin), "{origin}");
        }
        for origin in [
            "http://chatgpt.com",
            "https://chatgpt.org",
            "https://xchatgpt.com",
            "https://chatgpt.com.evil",
            "http://192.168.1.1",
            "http://[::2]",
            "http://localhost.evil.com",
            "https://user@evil.com",
            "file:///",
            "",
        ] {
            assert!(!is_allowed_origin(origin), "{origin}");
        }
    }

    #[test]
    fn exactly_the_ttl_boundary_is_accepted() {
        let mut p = connection();
        p.token_expires_at = NOW + MAX_PROOF_TTL_SECONDS;
        SignPayload::Connection(p).validate(NOW).unwrap();
        let mut e = enrollment();
        e.challenge_expires_at = NOW + 1;
        SignPayload::Enrollment(e).validate(NOW).unwrap();
    }

    #[test]
    fn wire_shape_round_trips_with_type_tag() {
        let wire = serde_json::json!({
            "type": "remoteControlClientEnrollment",
            "nonce": NONCE,
            "audience": "remote_control_client_enrollment",
            "challengeId": "rch_123",
            "targetOrigin": "https://chatgpt.com",
            "targetPath": "/wham/remote/control/client/enroll",
            "accountUserId": "account-user-1",
            "clientId": "cli_123",
            "deviceIdentitySha256Base64url": DIGEST,
            "challengeExpiresAt": 1_700_000_060
        });
        let parsed: SignPayload = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(parsed, SignPayload::Enrollment(enrollment()));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), wire);
        let bad_audience =
            serde_json::json!({"type": "remoteControlClientConnection", "audience": "x"});
        assert!(serde_json::from_value::<SignPayload>(bad_audience).is_err());
        let unknown_type = serde_json::json!({"type": "arbitraryBytes"});
        assert!(serde_json::from_value::<SignPayload>(unknown_type).is_err());
    }
}

/// The payloads of the canonical-bytes vectors in the device-key spec.
#[cfg(test)]
pub(crate) mod test_vectors {
    use super::*;

    pub const DIGEST: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";
    pub const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    pub fn connection() -> ConnectionPayload {
        ConnectionPayload {
            nonce: NONCE.into(),
            audience: ConnectionAudience::RemoteControlClientWebsocket,
            session_id: "wssess_123".into(),
            target_origin: "https://chatgpt.com".into(),
            target_path: "/api/codex/remote/control/client".into(),
            account_user_id: "account-user-1".into(),
            client_id: "cli_123".into(),
            token_expires_at: 1_700_000_000,
            token_sha256_base64url: DIGEST.into(),
            scopes: vec!["remote_control_controller_websocket".into()],
        }
    }

    pub fn enrollment() -> EnrollmentPayload {
        EnrollmentPayload {
            nonce: NONCE.into(),
            audience: EnrollmentAudience::RemoteControlClientEnrollment,
            challenge_id: "rch_123".into(),
            target_origin: "https://chatgpt.com".into(),
            target_path: "/wham/remote/control/client/enroll".into(),
            account_user_id: "account-user-1".into(),
            client_id: "cli_123".into(),
            device_identity_sha256_base64url: DIGEST.into(),
            challenge_expires_at: 1_700_000_060,
        }
    }
}
