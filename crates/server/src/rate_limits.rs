//! Rate limits as the upstream reports them in `x-<limit>-*` response headers (`x-codex-primary-
//! used-percent`, …): parsed into snapshots, the last ones kept for `account/rateLimits/read`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::HeaderMap;
use tether_protocol::{
    CreditsSnapshot, GetAccountRateLimitsResponse, RateLimitSnapshot, RateLimitWindow,
};

/// The limit id of the default bucket.
const DEFAULT_LIMIT: &str = "codex";

/// Every limit bucket the headers report (by limit id, `codex` first), or none.
pub fn parse_rate_limit_headers(headers: &HeaderMap) -> Vec<RateLimitSnapshot> {
    let mut families: Vec<String> = headers
        .keys()
        .filter_map(|name| {
            let name = name.as_str();
            let family = name
                .strip_prefix("x-")?
                .strip_suffix("-primary-used-percent")
                .or_else(|| {
                    name.strip_prefix("x-")?
                        .strip_suffix("-secondary-used-percent")
                })?;
            Some(family.to_owned())
        })
        .collect();
    if headers.contains_key("x-codex-credits-has-credits") {
        families.push(DEFAULT_LIMIT.to_owned());
    }
    families.sort_by_key(|family| (family != DEFAULT_LIMIT, family.clone()));
    families.dedup();
    families
        .into_iter()
        .map(|family| parse_family(headers, &family))
        .filter(|snapshot| {
            snapshot.primary.is_some() || snapshot.secondary.is_some() || snapshot.credits.is_some()
        })
        .collect()
}

fn parse_family(headers: &HeaderMap, family: &str) -> RateLimitSnapshot {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let window = |which: &str| {
        let used: f64 = text(&format!("x-{family}-{which}-used-percent"))?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())?;
        Some(RateLimitWindow {
            used_percent: used.round().clamp(0.0, i32::MAX as f64) as i32,
            window_duration_mins: text(&format!("x-{family}-{which}-window-minutes"))
                .and_then(|v| v.parse().ok()),
            resets_at: text(&format!("x-{family}-{which}-reset-at")).and_then(|v| v.parse().ok()),
        })
    };
    let credits = (family == DEFAULT_LIMIT)
        .then(|| {
            let flag = |name: &str| text(name).map(|v| v.eq_ignore_ascii_case("true") || v == "1");
            Some(CreditsSnapshot {
                has_credits: flag("x-codex-credits-has-credits")?,
                unlimited: flag("x-codex-credits-unlimited").unwrap_or(false),
                balance: text("x-codex-credits-balance").map(str::to_owned),
            })
        })
        .flatten();
    RateLimitSnapshot {
        limit_id: Some(family.replace('-', "_")),
        limit_name: text(&format!("x-{family}-limit-name")).map(str::to_owned),
        primary: window("primary"),
        secondary: window("secondary"),
        credits,
        ..RateLimitSnapshot::default()
    }
}

/// The last rate limits seen, per limit id.
#[derive(Debug, Default)]
pub struct RateLimitStore {
    latest: Mutex<BTreeMap<String, RateLimitSnapshot>>,
}

impl RateLimitStore {
    /// Records what one upstream response reported.
    pub fn record(&self, snapshots: &[RateLimitSnapshot]) {
        let mut latest = self.latest.lock().expect("rate limit store poisoned");
        for snapshot in snapshots {
            let id = snapshot
                .limit_id
                .clone()
                .unwrap_or_else(|| DEFAULT_LIMIT.to_owned());
            latest.insert(id, snapshot.clone());
        }
    }

    /// `account/rateLimits/read`: the last snapshots; a `codex` bucket without data before any
    /// upstream response reported one.
    pub fn read(&self) -> GetAccountRateLimitsResponse {
        let latest = self.latest.lock().expect("rate limit store poisoned");
        let rate_limits = latest
            .get(DEFAULT_LIMIT)
            .or_else(|| latest.values().next())
            .cloned()
            .unwrap_or_else(|| RateLimitSnapshot {
                limit_id: Some(DEFAULT_LIMIT.to_owned()),
                ..RateLimitSnapshot::default()
            });
        GetAccountRateLimitsResponse {
            rate_limits,
            rate_limits_by_limit_id: (!latest.is_empty()).then(|| latest.clone()),
            account_id: None,
            ordinary_usage_allowed: None,
            rate_limit_reset_credits: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_both_windows_credits_and_other_families() {
        let snapshots = parse_rate_limit_headers(&headers(&[
            ("x-codex-primary-used-percent", "42.6"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1700000000"),
            ("x-codex-secondary-used-percent", "9"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-credits-has-credits", "True"),
            ("x-codex-credits-balance", "5.39"),
            ("x-codex-other-primary-used-percent", "100"),
            ("x-codex-other-limit-name", "Other"),
            ("x-unrelated", "1"),
        ]));
        assert_eq!(snapshots.len(), 2);
        let codex = &snapshots[0];
        assert_eq!(codex.limit_id.as_deref(), Some("codex"));
        assert_eq!(
            codex.primary,
            Some(RateLimitWindow {
                used_percent: 43,
                window_duration_mins: Some(300),
                resets_at: Some(1_700_000_000)
            })
        );
        assert_eq!(codex.secondary.as_ref().unwrap().used_percent, 9);
        assert_eq!(codex.secondary.as_ref().unwrap().resets_at, None);
        assert_eq!(
            codex.credits,
            Some(CreditsSnapshot {
                has_credits: true,
                unlimited: false,
                balance: Some("5.39".into())
            })
        );
        let other = &snapshots[1];
        assert_eq!(other.limit_id.as_deref(), Some("codex_other"));
        assert_eq!(other.limit_name.as_deref(), Some("Other"));
        assert_eq!(other.credits, None);
    }

    #[test]
    fn garbage_values_are_ignored() {
        assert!(
            parse_rate_limit_headers(&headers(&[("x-codex-primary-used-percent", "lots")]))
                .is_empty()
        );
        assert!(parse_rate_limit_headers(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn the_store_answers_with_the_last_snapshot() {
        let store = RateLimitStore::default();
        let empty = store.read();
        assert_eq!(empty.rate_limits.limit_id.as_deref(), Some("codex"));
        assert_eq!(empty.rate_limits.primary, None);
        assert_eq!(empty.rate_limits_by_limit_id, None);
        store.record(&parse_rate_limit_headers(&headers(&[(
            "x-codex-primary-used-percent",
            "10",
        )])));
        store.record(&parse_rate_limit_headers(&headers(&[(
            "x-codex-primary-used-percent",
            "20",
        )])));
        let read = store.read();
        assert_eq!(read.rate_limits.primary.unwrap().used_percent, 20);
        assert_eq!(read.rate_limits_by_limit_id.unwrap().len(), 1);
    }
}
