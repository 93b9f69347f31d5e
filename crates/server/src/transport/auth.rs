//! Authentication of WebSocket handshakes: `Authorization: Bearer <token>`, either a capability
//! token compared by its SHA-256, or an HS256-signed JWT. Secrets are compared in constant time
//! and never logged.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// How a WebSocket listener checks its clients.
pub enum WsAuth {
    /// Anyone who can reach the socket (loopback and unix listeners).
    Open,
    /// A fixed bearer token, known by its SHA-256.
    CapabilityToken {
        /// SHA-256 of the token.
        sha256: [u8; 32],
    },
    /// A JWT signed with HMAC-SHA256 under a shared secret.
    SignedBearerToken {
        /// The shared secret.
        secret: Vec<u8>,
        /// Required `iss`, if set.
        issuer: Option<String>,
        /// Required `aud` (a string or one of an array), if set.
        audience: Option<String>,
        /// Tolerance for `exp` and `nbf`.
        max_clock_skew_seconds: u64,
    },
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
    nbf: Option<i64>,
    iss: Option<String>,
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl WsAuth {
    /// Whether anything is checked.
    pub fn is_open(&self) -> bool {
        matches!(self, WsAuth::Open)
    }

    /// Checks the handshake's headers. The error is the 401 body, which never repeats the token.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if self.is_open() {
            return Ok(());
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or("missing websocket bearer token")?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or("invalid authorization header")?;
        match self {
            WsAuth::Open => Ok(()),
            WsAuth::CapabilityToken { sha256 } => {
                let presented = Sha256::digest(token.as_bytes());
                if bool::from(presented[..].ct_eq(sha256)) {
                    Ok(())
                } else {
                    Err("invalid websocket bearer token")
                }
            }
            WsAuth::SignedBearerToken {
                secret,
                issuer,
                audience,
                max_clock_skew_seconds,
            } => {
                let claims = verify_hs256(token, secret).ok_or("invalid websocket jwt")?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let skew = *max_clock_skew_seconds as i64;
                if now > claims.exp.saturating_add(skew) {
                    return Err("expired websocket jwt");
                }
                if claims.nbf.is_some_and(|nbf| now < nbf.saturating_sub(skew)) {
                    return Err("websocket jwt is not valid yet");
                }
                if let Some(issuer) = issuer
                    && claims.iss.as_deref() != Some(issuer.as_str())
                {
                    return Err("websocket jwt issuer mismatch");
                }
                if let Some(audience) = audience {
                    let matches = match &claims.aud {
                        Some(Audience::One(aud)) => aud == audience,
                        Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
                        None => false,
                    };
                    if !matches {
                        return Err("websocket jwt audience mismatch");
                    }
                }
                Ok(())
            }
        }
    }
}

/// The claims of a well-formed HS256 token whose signature checks out.
fn verify_hs256(token: &str, secret: &[u8]) -> Option<Claims> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let jwt_header: JwtHeader = serde_json::from_slice(&decode(header)?).ok()?;
    if jwt_header.alg != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&decode(signature)?).ok()?;
    serde_json::from_slice(&decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn jwt(secret: &[u8], header: serde_json::Value, claims: serde_json::Value) -> String {
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signing_input = format!("{}.{}", encode(&header), encode(&claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn capability_token() {
        let auth = WsAuth::CapabilityToken {
            sha256: Sha256::digest(b"s3cret").into(),
        };
        assert_eq!(auth.authorize(&bearer("s3cret")), Ok(()));
        assert_eq!(
            auth.authorize(&bearer("s3cre")),
            Err("invalid websocket bearer token")
        );
        assert_eq!(
            auth.authorize(&HeaderMap::new()),
            Err("missing websocket bearer token")
        );
        let mut other = HeaderMap::new();
        for value in ["Basic czNjcmV0", "Bearer", "Bearer   ", "bearer-s3cret"] {
            other.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(
                auth.authorize(&other),
                Err("invalid authorization header"),
                "{value}"
            );
        }
        other.insert(header::AUTHORIZATION, "bEaReR  s3cret ".parse().unwrap());
        assert_eq!(auth.authorize(&other), Ok(()));
    }

    #[test]
    fn signed_bearer_token() {
        let secret = b"shared-secret-of-enough-length!!".to_vec();
        let auth = WsAuth::SignedBearerToken {
            secret: secret.clone(),
            issuer: Some("issuer".into()),
            audience: Some("tether".into()),
            max_clock_skew_seconds: 30,
        };
        let hs256 = json!({"alg": "HS256", "typ": "JWT"});
        let good = json!({"exp": now() + 60, "iss": "issuer", "aud": ["x", "tether"]});
        assert_eq!(
            auth.authorize(&bearer(&jwt(&secret, hs256.clone(), good.clone()))),
            Ok(())
        );
        let cases = [
            (
                jwt(b"other secret", hs256.clone(), good.clone()),
                "invalid websocket jwt",
            ),
            (
                jwt(&secret, json!({"alg": "none"}), good.clone()),
                "invalid websocket jwt",
            ),
            (
                jwt(
                    &secret,
                    hs256.clone(),
                    json!({"exp": now() - 31, "iss": "issuer", "aud": "tether"}),
                ),
                "expired websocket jwt",
            ),
            (
                jwt(
                    &secret,
                    hs256.clone(),
                    json!({"exp": now() + 60, "nbf": now() + 100, "iss": "issuer", "aud": "tether"}),
                ),
                "websocket jwt is not valid yet",
            ),
            (
                jwt(
                    &secret,
                    hs256.clone(),
                    json!({"exp": now() + 60, "iss": "other", "aud": "tether"}),
                ),
                "websocket jwt issuer mismatch",
            ),
            (
                jwt(
                    &secret,
                    hs256.clone(),
                    json!({"exp": now() + 60, "iss": "issuer"}),
                ),
                "websocket jwt audience mismatch",
            ),
            (
                jwt(
                    &secret,
                    hs256.clone(),
                    json!({"iss": "issuer", "aud": "tether"}),
                ),
                "invalid websocket jwt",
            ),
            ("a.b".to_owned(), "invalid websocket jwt"),
        ];
        for (token, why) in cases {
            assert_eq!(auth.authorize(&bearer(&token)), Err(why));
        }
        // Within the skew an expired token still passes.
        let recent = jwt(
            &secret,
            hs256,
            json!({"exp": now() - 10, "iss": "issuer", "aud": "tether"}),
        );
        assert_eq!(auth.authorize(&bearer(&recent)), Ok(()));
    }
}
