//! The login in `auth.json` as clients see it: `account/read`, `account/login/start` with an API
//! key, `account/logout`. Keys and tokens are read and written here and never logged.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_protocol::{
    Account, GetAccountResponse, LoginAccountParams, LoginAccountResponse, LogoutAccountResponse,
    PlanType,
};

/// The claim namespace of OpenAI's id tokens that carries the ChatGPT account details.
const AUTH_CLAIMS: &str = "https://api.openai.com/auth";
/// The claim namespace that carries the profile (an alternative home of `email`).
const PROFILE_CLAIMS: &str = "https://api.openai.com/profile";

/// Why an account request failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// `auth.json` exists but cannot be read or parsed.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `auth.json` cannot be written or removed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A login type tether does not perform.
    #[error(
        "login type `{0}` is not supported by this server: sign in with an API key (type \"apiKey\"), or run `codex login` and copy auth.json into the server's home"
    )]
    UnsupportedLogin(&'static str),
    /// An empty API key.
    #[error("apiKey must not be empty")]
    EmptyApiKey,
}

/// `auth.json` as codex writes it. Members tether does not use are kept as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    /// `apikey` or `chatgpt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// The stored API key.
    #[serde(rename = "OPENAI_API_KEY", default)]
    pub openai_api_key: Option<String>,
    /// A ChatGPT login's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<AuthTokens>,
    /// Everything else, round-tripped.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `auth.json` `tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthTokens {
    /// The OpenID id token (a JWT): the account's email and plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The bearer token for requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The ChatGPT account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Everything else, round-tripped.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl AuthFile {
    /// Reads `path`; `None` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<AuthFile>, AccountError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(AccountError::Unreadable {
                    path: path.to_owned(),
                    message: err.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| AccountError::Unreadable {
                path: path.to_owned(),
                message: err.to_string(),
            })
    }

    /// Whether this is a ChatGPT login (an explicit mode, or tokens and no key).
    pub fn is_chatgpt(&self) -> bool {
        match self.auth_mode.as_deref() {
            Some(mode) => mode == "chatgpt",
            None => self.tokens.is_some() && self.api_key().is_none(),
        }
    }

    /// The stored API key, if set and non-empty.
    pub fn api_key(&self) -> Option<&str> {
        self.openai_api_key.as_deref().filter(|key| !key.is_empty())
    }
}

/// What the id token says about the account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// `email`, or the profile claim's `email`.
    pub email: Option<String>,
    /// `chatgpt_plan_type` of the auth claim.
    pub plan_type: Option<String>,
    /// `chatgpt_user_id` (or `user_id`) of the auth claim.
    pub user_id: Option<String>,
}

impl IdTokenClaims {
    /// Decodes the payload of a JWT without checking its signature: the token is the server's
    /// own stored credential, only displayed, never trusted for access decisions.
    pub fn parse(jwt: &str) -> Option<IdTokenClaims> {
        let payload = jwt.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
        let text = |object: Option<&Value>, key: &str| {
            object
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let auth = claims.get(AUTH_CLAIMS);
        Some(IdTokenClaims {
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| text(claims.get(PROFILE_CLAIMS), "email")),
            plan_type: text(auth, "chatgpt_plan_type"),
            user_id: text(auth, "chatgpt_user_id").or_else(|| text(auth, "user_id")),
        })
    }
}

/// `account/read`: the login in `auth_json` (an `OPENAI_API_KEY` in the environment counts as an
/// API-key login), and whether the provider needs an OpenAI login at all.
pub fn read_account(
    auth_json: &Path,
    env_api_key: Option<&str>,
    requires_openai_auth: bool,
) -> Result<GetAccountResponse, AccountError> {
    let auth = AuthFile::read(auth_json)?;
    let mut user_id = None;
    let account = match &auth {
        Some(auth) if auth.is_chatgpt() => {
            let claims = auth
                .tokens
                .as_ref()
                .and_then(|tokens| tokens.id_token.as_deref())
                .and_then(IdTokenClaims::parse)
                .unwrap_or_default();
            user_id = claims.user_id;
            Some(Account::Chatgpt {
                email: claims.email,
                plan_type: claims
                    .plan_type
                    .as_deref()
                    .map_or(PlanType::Unknown, PlanType::from_claim),
            })
        }
        Some(auth) if auth.api_key().is_some() => Some(Account::ApiKey),
        _ if env_api_key.is_some_and(|key| !key.is_empty()) => Some(Account::ApiKey),
        _ => None,
    };
    Ok(GetAccountResponse {
        account,
        user_id,
        requires_openai_auth,
        workspace_routing: None,
    })
}

/// `account/login/start`: stores an API key in `auth_json` (mode 0600, replaced atomically);
/// other login types are refused.
pub fn login(
    auth_json: &Path,
    params: &LoginAccountParams,
) -> Result<LoginAccountResponse, AccountError> {
    let LoginAccountParams::ApiKey { api_key } = params else {
        return Err(AccountError::UnsupportedLogin(params.kind()));
    };
    let api_key = api_key.trim();
    if api_key.is_empty() {
        return Err(AccountError::EmptyApiKey);
    }
    let auth = AuthFile {
        auth_mode: Some("apikey".into()),
        openai_api_key: Some(api_key.to_owned()),
        tokens: None,
        other: Map::new(),
    };
    let text = serde_json::to_vec_pretty(&auth).expect("auth.json serializes");
    write_private_atomically(auth_json, &text).map_err(|source| AccountError::Write {
        path: auth_json.to_owned(),
        source,
    })?;
    Ok(LoginAccountResponse::ApiKey)
}

/// `account/logout`: removes `auth_json` (already absent is fine).
pub fn logout(auth_json: &Path) -> Result<LogoutAccountResponse, AccountError> {
    match std::fs::remove_file(auth_json) {
        Ok(()) => Ok(LogoutAccountResponse {}),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(LogoutAccountResponse {}),
        Err(source) => Err(AccountError::Write {
            path: auth_json.to_owned(),
            source,
        }),
    }
}

/// Writes `bytes` to a new owner-only file next to `path`, syncs it and renames it over `path`,
/// so readers see the old file or the new one, never a part.
pub(crate) fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes, 0o600)
}

/// Like [`write_private_atomically`] with the file mode `mode`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy();
    let temp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(dir) = dir {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::*;

    fn jwt(claims: Value) -> String {
        let encode = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!(
            "{}.{}.signature",
            encode(&json!({"alg": "RS256"})),
            encode(&claims)
        )
    }

    #[test]
    fn no_auth_file_means_no_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let response = read_account(&path, None, true).unwrap();
        assert_eq!(response.account, None);
        assert!(response.requires_openai_auth);
        let response = read_account(&path, Some("sk-env"), false).unwrap();
        assert_eq!(response.account, Some(Account::ApiKey));
        assert!(!response.requires_openai_auth);
    }

    #[test]
    fn a_chatgpt_login_shows_email_and_plan_from_the_id_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let id_token = jwt(json!({
            "email": "dev@example.com",
            AUTH_CLAIMS: {"chatgpt_plan_type": "pro", "chatgpt_user_id": "user-123"}
        }));
        std::fs::write(
            &path,
            json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
                   "tokens": {"id_token": id_token, "access_token": "a", "refresh_token": "r"}})
            .to_string(),
        )
        .unwrap();
        let response = read_account(&path, None, true).unwrap();
        assert_eq!(
            response.account,
            Some(Account::Chatgpt {
                email: Some("dev@example.com".into()),
                plan_type: PlanType::Pro
            })
        );
        assert_eq!(response.user_id.as_deref(), Some("user-123"));
    }

    #[test]
    fn an_unparsable_id_token_still_counts_as_a_chatgpt_login() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, r#"{"tokens": {"id_token": "not-a-jwt"}}"#).unwrap();
        let response = read_account(&path, None, true).unwrap();
        assert_eq!(
            response.account,
            Some(Account::Chatgpt {
                email: None,
                plan_type: PlanType::Unknown
            })
        );
    }

    #[test]
    fn a_corrupt_auth_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, "{").unwrap();
        let err = read_account(&path, None, true).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn api_key_login_writes_a_private_file_that_reads_back_and_logout_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home").join("auth.json");
        let response = login(
            &path,
            &LoginAccountParams::ApiKey {
                api_key: " sk-test ".into(),
            },
        )
        .unwrap();
        assert_eq!(response, LoginAccountResponse::ApiKey);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(stored["OPENAI_API_KEY"], "sk-test");
        assert_eq!(stored["auth_mode"], "apikey");
        assert_eq!(
            read_account(&path, None, true).unwrap().account,
            Some(Account::ApiKey)
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["auth.json"]);

        logout(&path).unwrap();
        assert!(!path.exists());
        logout(&path).unwrap();
        assert_eq!(read_account(&path, None, true).unwrap().account, None);
    }

    #[test]
    fn browser_logins_and_empty_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let err = login(&path, &LoginAccountParams::Chatgpt {}).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("login type `chatgpt` is not supported"),
            "{err}"
        );
        let err = login(
            &path,
            &LoginAccountParams::ApiKey {
                api_key: "  ".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "apiKey must not be empty");
        assert!(!path.exists());
    }
}
