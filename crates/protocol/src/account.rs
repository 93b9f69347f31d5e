//! Accounts and login: `account/read`, `account/login/start`, `account/logout`,
//! `account/rateLimits/read`, the Bedrock GovCloud check, and the account notifications.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `account/read` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountParams {
    /// Refresh the login's tokens before answering (tether's logins have nothing to refresh).
    #[serde(default)]
    pub refresh_token: bool,
}

/// `account/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountResponse {
    /// The signed-in account; `null` when there is none.
    pub account: Option<Account>,
    /// The ChatGPT user id, when known.
    pub user_id: Option<String>,
    /// The active provider needs an OpenAI login: without an account the client shows sign-in.
    pub requires_openai_auth: bool,
    /// ChatGPT workspace routing; tether never routes.
    pub workspace_routing: Option<serde_json::Value>,
}

/// Who is signed in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Account {
    /// An OpenAI API key.
    ApiKey,
    /// A ChatGPT login.
    Chatgpt {
        /// From the id token's claims.
        email: Option<String>,
        /// The ChatGPT plan.
        plan_type: PlanType,
    },
}

/// A ChatGPT plan, as the id token's `chatgpt_plan_type` claim names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum PlanType {
    Free,
    Go,
    Plus,
    Pro,
    Prolite,
    Promax,
    Team,
    SelfServeBusinessProlite,
    SelfServeBusinessUsageBased,
    Business,
    Ent26,
    EnterpriseCbpAutomation,
    EnterpriseCbpUsageBased,
    Enterprise,
    Edu,
    EduPlus,
    EduPro,
    Sci,
    SciPlus,
    /// Any plan this list does not name.
    #[serde(other)]
    Unknown,
}

impl PlanType {
    /// The plan a claim names; unknown names are [`PlanType::Unknown`].
    pub fn from_claim(claim: &str) -> PlanType {
        serde_json::from_value(serde_json::Value::String(claim.to_ascii_lowercase()))
            .unwrap_or(PlanType::Unknown)
    }
}

/// How a client logs in (`account/login/start` params).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum LoginAccountParams {
    /// Store an OpenAI API key.
    ApiKey {
        /// The key.
        api_key: String,
    },
    /// The ChatGPT browser flow.
    Chatgpt {},
    /// The ChatGPT device-code flow.
    ChatgptDeviceCode {},
    /// Tokens supplied by a host app.
    ChatgptAuthTokens {},
    /// An Amazon Bedrock key.
    AmazonBedrock {},
    /// Amazon Bedrock access keys.
    AmazonBedrockAccessKeys {},
}

impl LoginAccountParams {
    /// The wire name of the login type.
    pub fn kind(&self) -> &'static str {
        match self {
            LoginAccountParams::ApiKey { .. } => "apiKey",
            LoginAccountParams::Chatgpt {} => "chatgpt",
            LoginAccountParams::ChatgptDeviceCode {} => "chatgptDeviceCode",
            LoginAccountParams::ChatgptAuthTokens {} => "chatgptAuthTokens",
            LoginAccountParams::AmazonBedrock {} => "amazonBedrock",
            LoginAccountParams::AmazonBedrockAccessKeys {} => "amazonBedrockAccessKeys",
        }
    }
}

/// `account/login/start` result for the login types tether completes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum LoginAccountResponse {
    /// The key was stored; the login is complete.
    ApiKey,
}

/// `account/logout` result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogoutAccountResponse {}

/// `account/bedrock/checkGovCloudRequirements` params (none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BedrockCheckGovCloudRequirementsParams {}

/// `account/bedrock/checkGovCloudRequirements` result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BedrockCheckGovCloudRequirementsResponse {
    /// The Bedrock login resolves to a GovCloud region.
    pub is_gov_cloud: bool,
    /// GovCloud is selected and the requirements miss the baseline.
    pub should_warn: bool,
}

/// `account/rateLimits/read` params (absent, `null` or this object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountRateLimitsParams {
    /// Skip the reset-credit detail lookup.
    #[serde(default)]
    pub exclude_reset_credit_details: bool,
    /// The client supports Luna Reserve fallback.
    #[serde(default)]
    pub supports_luna_reserve: bool,
}

/// `account/rateLimits/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountRateLimitsResponse {
    /// The `codex` bucket (the historical single-bucket view).
    pub rate_limits: RateLimitSnapshot,
    /// Every bucket by limit id; `null` when only one is known.
    pub rate_limits_by_limit_id: Option<BTreeMap<String, RateLimitSnapshot>>,
    /// The account the snapshot belongs to, when known.
    pub account_id: Option<String>,
    /// Whether ordinary usage is allowed; `null`: unknown.
    pub ordinary_usage_allowed: Option<bool>,
    /// Reset credits; `null`: unknown.
    pub rate_limit_reset_credits: Option<serde_json::Value>,
}

/// The state of one metered rate limit, as the upstream's `x-<limit>-*` headers report it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSnapshot {
    /// Metered limit id, e.g. `codex`.
    pub limit_id: Option<String>,
    /// Display name of the limit.
    pub limit_name: Option<String>,
    /// The model whose options describe this quota alias.
    pub normal_model_slug: Option<String>,
    /// The shorter window (typically 5 hours).
    pub primary: Option<RateLimitWindow>,
    /// The longer window (typically a week).
    pub secondary: Option<RateLimitWindow>,
    /// Purchased credits.
    pub credits: Option<CreditsSnapshot>,
    /// Per-member spend control.
    pub individual_limit: Option<serde_json::Value>,
    /// Whether spend control was reached; `null`: unknown.
    pub spend_control_reached: Option<bool>,
    /// The account's plan, when known.
    pub plan_type: Option<PlanType>,
    /// Which limit was hit, when one was.
    pub rate_limit_reached_type: Option<RateLimitReachedType>,
}

/// One rate-limit window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitWindow {
    /// Percent of the window used, 0–100.
    pub used_percent: i32,
    /// Window length in minutes.
    pub window_duration_mins: Option<i64>,
    /// Unix seconds when the window resets.
    pub resets_at: Option<i64>,
}

/// Purchased credits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsSnapshot {
    /// Any credits left.
    pub has_credits: bool,
    /// Credits never run out.
    pub unlimited: bool,
    /// The balance as the upstream spells it.
    pub balance: Option<String>,
}

/// Which limit a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RateLimitReachedType {
    RateLimitReached,
    WorkspaceOwnerCreditsDepleted,
    WorkspaceMemberCreditsDepleted,
    WorkspaceOwnerUsageLimitReached,
    WorkspaceMemberUsageLimitReached,
}

/// `account/rateLimits/updated` params: a sparse update to merge into the last read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRateLimitsUpdatedNotification {
    /// What the last upstream response reported.
    pub rate_limits: RateLimitSnapshot,
}

/// How the server authenticates to an OpenAI-backed provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthMode {
    /// An API key stored by the server.
    #[serde(rename = "apikey")]
    ApiKey,
    /// A ChatGPT login.
    #[serde(rename = "chatgpt")]
    Chatgpt,
}

/// `account/updated` params: sent after a login or logout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdatedNotification {
    /// The new login mode; `null` after a logout.
    pub auth_mode: Option<AuthMode>,
    /// The plan of a ChatGPT login.
    pub plan_type: Option<PlanType>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_tui_sends() {
        let params: GetAccountParams = serde_json::from_value(json!({})).unwrap();
        assert!(!params.refresh_token);
        let _: BedrockCheckGovCloudRequirementsParams = serde_json::from_value(json!({})).unwrap();
        let login: LoginAccountParams =
            serde_json::from_value(json!({"type": "apiKey", "apiKey": "sk-x"})).unwrap();
        assert_eq!(
            login,
            LoginAccountParams::ApiKey {
                api_key: "sk-x".into()
            }
        );
        let login: LoginAccountParams = serde_json::from_value(
            json!({"type": "chatgpt", "codexStreamlinedLogin": true, "appBrand": null}),
        )
        .unwrap();
        assert_eq!(login.kind(), "chatgpt");
    }

    #[test]
    fn plan_types_come_from_claims() {
        assert_eq!(PlanType::from_claim("plus"), PlanType::Plus);
        assert_eq!(PlanType::from_claim("Pro"), PlanType::Pro);
        assert_eq!(
            PlanType::from_claim("self_serve_business_usage_based"),
            PlanType::SelfServeBusinessUsageBased
        );
        assert_eq!(PlanType::from_claim("galactic"), PlanType::Unknown);
        assert_eq!(
            serde_json::to_value(PlanType::Unknown).unwrap(),
            json!("unknown")
        );
    }
}
