//! Thread goals and history revert.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Where a goal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum ThreadGoalStatus {
    Active,
    Paused,
    Blocked,
    UsageLimited,
    BudgetLimited,
    Complete,
}

impl ThreadGoalStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadGoalStatus::Active => "active",
            ThreadGoalStatus::Paused => "paused",
            ThreadGoalStatus::Blocked => "blocked",
            ThreadGoalStatus::UsageLimited => "usageLimited",
            ThreadGoalStatus::BudgetLimited => "budgetLimited",
            ThreadGoalStatus::Complete => "complete",
        }
    }
}

/// A thread's goal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ThreadGoal {
    pub thread_id: String,
    pub objective: String,
    pub status: ThreadGoalStatus,
    pub token_budget: Option<i64>,
    pub tokens_used: i64,
    pub time_used_seconds: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// `thread/goal/set` params. `tokenBudget: null` clears the budget; an absent member leaves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadGoalSetParams {
    /// The thread.
    pub thread_id: String,
    /// New objective (trimmed; 1–4000 characters).
    #[serde(default)]
    pub objective: Option<String>,
    /// New status.
    #[serde(default)]
    pub status: Option<ThreadGoalStatus>,
    /// Absent: unchanged. `null`: no budget. A number: the budget (positive).
    #[serde(default, deserialize_with = "present")]
    pub token_budget: Option<Option<i64>>,
}

/// Tells an absent member (`None`, by `default`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

/// `thread/revert` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadRevertParams {
    /// The thread.
    pub thread_id: String,
    /// This turn and every later one are removed from the durable history.
    pub before_turn_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_null_budget_differs_from_an_absent_one() {
        let parse = |v| {
            serde_json::from_value::<ThreadGoalSetParams>(v)
                .unwrap()
                .token_budget
        };
        assert_eq!(parse(json!({"threadId": "t"})), None);
        assert_eq!(
            parse(json!({"threadId": "t", "tokenBudget": null})),
            Some(None)
        );
        assert_eq!(
            parse(json!({"threadId": "t", "tokenBudget": 5})),
            Some(Some(5))
        );
    }
}

/// The result of `thread/goal/set`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ThreadGoalSetResponse {
    /// The goal now.
    pub goal: ThreadGoal,
}

/// The result of `thread/goal/get`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ThreadGoalGetResponse {
    /// The goal, if the thread has one.
    pub goal: Option<ThreadGoal>,
}

/// The result of `thread/goal/clear`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ThreadGoalClearResponse {
    /// False when there was no goal.
    pub cleared: bool,
}

/// The result of `thread/revert`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadRevertResponse {
    /// The thread after the revert, without turns.
    pub thread: crate::Thread,
    /// Not offered: `null`.
    pub turns_backwards_cursor: Option<String>,
    /// Not offered: `null`.
    pub items_backwards_cursor: Option<String>,
}
