//! The rate-limit mode of the simulated REST API (off by default).
//!
//! As Zoom documents ("Rate limits"): limits apply per account, shared by every
//! app on it; each endpoint has a category (Light, Medium, Heavy,
//! Resource-intensive) with a per-second (QPS) limit and, for some plans and
//! categories, a daily limit that resets at 00:00 UTC. Over a limit Zoom answers
//! 429 with `X-RateLimit-Category`, `X-RateLimit-Type` (`QPS` or `Daily-limit`),
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `Retry-After` (seconds, or an
//! ISO date for daily limits); Zoom's forum shows 429s without `Retry-After` too.
//!
//! The model is pure: a token bucket per (account, category) refilled by the
//! simulated clock, plus a day counter. Memory is bounded by the registered
//! accounts (only authenticated requests are counted).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Zoom's rate-limit categories ("Rate Limit Label" in its API reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Light,
    Medium,
    Heavy,
    ResourceIntensive,
}

impl Category {
    /// The `X-RateLimit-Category` value.
    pub fn header(self) -> &'static str {
        match self {
            Category::Light => "Light",
            Category::Medium => "Medium",
            Category::Heavy => "Heavy",
            Category::ResourceIntensive => "Resource-intensive",
        }
    }
}

/// One category's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryLimit {
    /// Requests per `window_secs` (Zoom: per second; Resource-intensive: per minute).
    pub rate: u32,
    #[serde(default = "one")]
    pub window_secs: u32,
    /// Requests per UTC day; None: no daily limit.
    #[serde(default)]
    pub daily: Option<u32>,
}

fn one() -> u32 {
    1
}

/// Rate-limit settings. The defaults are Zoom's Pro plan; Zoom shares the Heavy and
/// Resource-intensive daily limit, here each category counts its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    #[serde(default)]
    pub enabled: bool,
    /// Send `Retry-After` on 429s (Zoom sometimes does not).
    #[serde(default = "yes")]
    pub retry_after: bool,
    #[serde(default = "light")]
    pub light: CategoryLimit,
    #[serde(default = "medium")]
    pub medium: CategoryLimit,
    #[serde(default = "heavy")]
    pub heavy: CategoryLimit,
    #[serde(default = "resource_intensive")]
    pub resource_intensive: CategoryLimit,
}

fn yes() -> bool {
    true
}
fn light() -> CategoryLimit {
    CategoryLimit {
        rate: 30,
        window_secs: 1,
        daily: None,
    }
}
fn medium() -> CategoryLimit {
    CategoryLimit {
        rate: 20,
        window_secs: 1,
        daily: None,
    }
}
fn heavy() -> CategoryLimit {
    CategoryLimit {
        rate: 10,
        window_secs: 1,
        daily: Some(30_000),
    }
}
fn resource_intensive() -> CategoryLimit {
    CategoryLimit {
        rate: 10,
        window_secs: 60,
        daily: Some(30_000),
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            enabled: false,
            retry_after: true,
            light: light(),
            medium: medium(),
            heavy: heavy(),
            resource_intensive: resource_intensive(),
        }
    }
}

impl RateLimitSettings {
    pub fn limit(&self, category: Category) -> CategoryLimit {
        match category {
            Category::Light => self.light,
            Category::Medium => self.medium,
            Category::Heavy => self.heavy,
            Category::ResourceIntensive => self.resource_intensive,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, l) in [
            ("light", self.light),
            ("medium", self.medium),
            ("heavy", self.heavy),
            ("resource_intensive", self.resource_intensive),
        ] {
            if l.rate == 0 || l.window_secs == 0 || l.window_secs > 86_400 {
                return Err(format!(
                    "rate_limit.{name}: rate must be at least 1 and window_secs 1..=86400"
                ));
            }
            if l.daily == Some(0) {
                return Err(format!(
                    "rate_limit.{name}.daily must be at least 1 (or null)"
                ));
            }
        }
        Ok(())
    }
}

/// Which limit a 429 is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitType {
    Qps,
    Daily,
}

impl LimitType {
    /// The `X-RateLimit-Type` value.
    pub fn header(self) -> &'static str {
        match self {
            LimitType::Qps => "QPS",
            LimitType::Daily => "Daily-limit",
        }
    }
}

/// The verdict for one request, with the header values to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub category: Category,
    /// None: allowed. Some: refused by this limit.
    pub refused: Option<LimitType>,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds (QPS) or an ISO date (daily), when refused.
    pub retry_after: Option<String>,
    /// The daily limit, for the 429 message.
    pub daily_limit: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated_ms: Millis,
    day: i64,
    used_today: u32,
}

const DAY_MS: Millis = 86_400_000;

/// All buckets.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    buckets: HashMap<(String, Category), Bucket>,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        RateLimiter {
            settings,
            buckets: HashMap::new(),
        }
    }

    pub fn settings(&self) -> RateLimitSettings {
        self.settings
    }

    /// New settings start every bucket afresh.
    pub fn set_settings(&mut self, settings: RateLimitSettings) {
        self.settings = settings;
        self.buckets.clear();
    }

    /// Counts one request of `account_id` in `category`; None when the mode is off.
    pub fn check(&mut self, account_id: &str, category: Category, now: Millis) -> Option<Verdict> {
        if !self.settings.enabled {
            return None;
        }
        let limit = self.settings.limit(category);
        let capacity = f64::from(limit.rate);
        let per_ms = capacity / (f64::from(limit.window_secs) * 1000.0);
        let day = now.div_euclid(DAY_MS);
        let bucket = self
            .buckets
            .entry((account_id.to_owned(), category))
            .or_insert(Bucket {
                tokens: capacity,
                updated_ms: now,
                day,
                used_today: 0,
            });
        let elapsed = now.saturating_sub(bucket.updated_ms).max(0);
        #[allow(clippy::cast_precision_loss)]
        let refill = elapsed as f64 * per_ms;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated_ms = now.max(bucket.updated_ms);
        if bucket.day != day {
            bucket.day = day;
            bucket.used_today = 0;
        }
        let mut verdict = Verdict {
            category,
            refused: None,
            limit: limit.rate,
            remaining: 0,
            retry_after: None,
            daily_limit: limit.daily,
        };
        if let Some(daily) = limit.daily {
            if bucket.used_today >= daily {
                let next_midnight = (day + 1).saturating_mul(DAY_MS);
                verdict.refused = Some(LimitType::Daily);
                verdict.limit = daily;
                verdict.retry_after = crate::clock::rfc3339_secs(next_midnight);
                return Some(verdict);
            }
        }
        if bucket.tokens < 1.0 {
            let wait_ms = (1.0 - bucket.tokens) / per_ms;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let secs = (wait_ms / 1000.0).ceil().max(1.0) as u64;
            verdict.refused = Some(LimitType::Qps);
            verdict.retry_after = Some(secs.to_string());
            return Some(verdict);
        }
        bucket.tokens -= 1.0;
        bucket.used_today = bucket.used_today.saturating_add(1);
        // Zoom reports the daily budget on successful answers where there is one.
        match limit.daily {
            Some(daily) => {
                verdict.limit = daily;
                verdict.remaining = daily.saturating_sub(bucket.used_today);
            }
            None => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let left = bucket.tokens.floor().max(0.0) as u32;
                verdict.remaining = left;
            }
        }
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn limiter(light: CategoryLimit) -> RateLimiter {
        RateLimiter::new(RateLimitSettings {
            enabled: true,
            light,
            ..RateLimitSettings::default()
        })
    }

    #[test]
    fn off_by_default() {
        let mut rl = RateLimiter::new(RateLimitSettings::default());
        assert_eq!(rl.check("A", Category::Light, T0), None);
    }

    #[test]
    fn qps_bucket_refills_with_time() {
        let mut rl = limiter(CategoryLimit {
            rate: 2,
            window_secs: 1,
            daily: None,
        });
        let v = rl.check("A", Category::Light, T0).expect("on");
        assert_eq!((v.refused, v.limit, v.remaining), (None, 2, 1));
        assert_eq!(
            rl.check("A", Category::Light, T0).expect("on").refused,
            None
        );
        let v = rl.check("A", Category::Light, T0).expect("on");
        assert_eq!(v.refused, Some(LimitType::Qps));
        assert_eq!(v.retry_after.as_deref(), Some("1"));
        // Another account has its own bucket.
        assert_eq!(
            rl.check("B", Category::Light, T0).expect("on").refused,
            None
        );
        // Half a second later one token is back.
        assert_eq!(
            rl.check("A", Category::Light, T0 + 500)
                .expect("on")
                .refused,
            None
        );
    }

    #[test]
    fn daily_limit_resets_at_midnight_utc() {
        let mut rl = limiter(CategoryLimit {
            rate: 100,
            window_secs: 1,
            daily: Some(2),
        });
        let v = rl.check("A", Category::Light, T0).expect("on");
        assert_eq!((v.limit, v.remaining), (2, 1));
        rl.check("A", Category::Light, T0).expect("on");
        let v = rl.check("A", Category::Light, T0).expect("on");
        assert_eq!(v.refused, Some(LimitType::Daily));
        assert_eq!(v.retry_after.as_deref(), Some("2023-11-15T00:00:00Z"));
        let next_day = (T0 / DAY_MS + 1) * DAY_MS;
        assert_eq!(
            rl.check("A", Category::Light, next_day)
                .expect("on")
                .refused,
            None
        );
    }

    #[test]
    fn validation() {
        assert!(RateLimitSettings::default().validate().is_ok());
        let bad = RateLimitSettings {
            light: CategoryLimit {
                rate: 0,
                window_secs: 1,
                daily: None,
            },
            ..RateLimitSettings::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(Category::ResourceIntensive.header(), "Resource-intensive");
    }
}
