//! Goal rules: validation of `thread/goal/set`, the patch semantics, persistence, and accounting
//! of the turns that work towards an active goal.

use tether_protocol::{ErrorObject, ThreadGoal, ThreadGoalSetParams, ThreadGoalStatus};
use tether_state::StateDb;

const MAX_OBJECTIVE_CHARS: usize = 4000;

fn invalid(message: impl Into<String>) -> ErrorObject {
    ErrorObject::invalid_request(message)
}

fn internal(error: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::internal(error.to_string())
}

/// The stored goal of `thread_id`.
pub async fn load(state: &StateDb, thread_id: &str) -> Result<Option<ThreadGoal>, ErrorObject> {
    match state.goal(thread_id).await.map_err(internal)? {
        Some(json) => serde_json::from_str(&json).map(Some).map_err(internal),
        None => Ok(None),
    }
}

/// Stores `goal` for its thread.
pub async fn store(state: &StateDb, goal: &ThreadGoal) -> Result<(), ErrorObject> {
    let json = serde_json::to_string(goal).map_err(internal)?;
    state
        .put_goal(&goal.thread_id, json)
        .await
        .map_err(internal)
}

/// The goal after applying `params` to `current` at time `now` (Unix seconds), or the
/// protocol's error. Nothing is stored.
pub fn apply(
    current: Option<ThreadGoal>,
    params: &ThreadGoalSetParams,
    now: i64,
) -> Result<ThreadGoal, ErrorObject> {
    let objective = params.objective.as_deref().map(str::trim);
    if let Some(objective) = objective {
        if objective.is_empty() {
            return Err(invalid("goal objective must not be empty"));
        }
        if objective.chars().count() > MAX_OBJECTIVE_CHARS {
            return Err(invalid("goal objective must be at most 4000 characters"));
        }
    }
    if let Some(Some(budget)) = params.token_budget
        && budget <= 0
    {
        return Err(invalid("goal budgets must be positive when provided"));
    }
    let Some(mut goal) = current else {
        let Some(objective) = objective else {
            return Err(invalid(format!(
                "cannot update goal for thread {}: no goal exists",
                params.thread_id
            )));
        };
        return Ok(ThreadGoal {
            thread_id: params.thread_id.clone(),
            objective: objective.to_owned(),
            status: params.status.unwrap_or(ThreadGoalStatus::Active),
            token_budget: params.token_budget.flatten(),
            tokens_used: 0,
            time_used_seconds: 0,
            created_at: now,
            updated_at: now,
        });
    };
    if let Some(objective) = objective {
        goal.objective = objective.to_owned();
    }
    if let Some(status) = params.status {
        goal.status = status;
    }
    if let Some(budget) = params.token_budget {
        goal.token_budget = budget;
    }
    goal.updated_at = now;
    Ok(goal)
}

/// Counts a finished turn towards an active goal; an exhausted budget stops the goal. False
/// when the goal is not active (nothing changes).
pub fn account(goal: &mut ThreadGoal, tokens: i64, seconds: i64, now: i64) -> bool {
    if goal.status != ThreadGoalStatus::Active {
        return false;
    }
    goal.tokens_used += tokens;
    goal.time_used_seconds += seconds;
    goal.updated_at = now;
    if goal
        .token_budget
        .is_some_and(|budget| goal.tokens_used >= budget)
    {
        goal.status = ThreadGoalStatus::BudgetLimited;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(objective: Option<&str>, budget: Option<Option<i64>>) -> ThreadGoalSetParams {
        ThreadGoalSetParams {
            thread_id: "t".into(),
            objective: objective.map(str::to_owned),
            status: None,
            token_budget: budget,
        }
    }

    fn error(current: Option<ThreadGoal>, params: ThreadGoalSetParams) -> String {
        apply(current, &params, 1).unwrap_err().message
    }

    #[test]
    fn validation_table() {
        assert_eq!(
            error(None, params(Some("   "), None)),
            "goal objective must not be empty"
        );
        assert_eq!(
            error(None, params(Some(&"x".repeat(4001)), None)),
            "goal objective must be at most 4000 characters"
        );
        assert!(
            apply(None, &params(Some(&"é".repeat(4000)), None), 1).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            error(None, params(Some("ok"), Some(Some(0)))),
            "goal budgets must be positive when provided"
        );
        assert_eq!(
            error(None, params(None, Some(Some(-5)))),
            "goal budgets must be positive when provided"
        );
        assert_eq!(
            error(None, params(None, None)),
            "cannot update goal for thread t: no goal exists"
        );
    }

    #[test]
    fn patches_keep_what_is_absent_and_null_clears_the_budget() {
        let goal = apply(None, &params(Some("  Ship it  "), Some(Some(100))), 10).unwrap();
        assert_eq!(
            (goal.objective.as_str(), goal.status, goal.token_budget),
            ("Ship it", ThreadGoalStatus::Active, Some(100))
        );
        let mut used = goal.clone();
        used.tokens_used = 40;
        let same = apply(Some(used.clone()), &params(None, None), 20).unwrap();
        assert_eq!(
            (
                same.token_budget,
                same.tokens_used,
                same.created_at,
                same.updated_at
            ),
            (Some(100), 40, 10, 20)
        );
        let cleared = apply(Some(used.clone()), &params(Some("New"), Some(None)), 30).unwrap();
        assert_eq!(
            (
                cleared.objective.as_str(),
                cleared.token_budget,
                cleared.tokens_used
            ),
            ("New", None, 40)
        );
    }

    #[test]
    fn accounting_stops_an_active_goal_at_its_budget() {
        let mut goal = apply(None, &params(Some("g"), Some(Some(50))), 1).unwrap();
        assert!(account(&mut goal, 30, 2, 5));
        assert_eq!(
            (goal.tokens_used, goal.time_used_seconds, goal.status),
            (30, 2, ThreadGoalStatus::Active)
        );
        assert!(account(&mut goal, 30, 1, 6));
        assert_eq!(goal.status, ThreadGoalStatus::BudgetLimited);
        assert!(!account(&mut goal, 30, 1, 7), "no longer active");
        assert_eq!(goal.tokens_used, 60);
    }
}
