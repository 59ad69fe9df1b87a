//! Per-token rate limits: a token bucket per token name, refilled at the rate set for the token
//! (or for its role), holding up to twice that (bursts of two seconds' worth). A request over the
//! limit is answered `429` with `Retry-After` at once; nothing is queued.
//!
//! Time comes in as milliseconds from the caller (the hub's clock), so the arithmetic is tested
//! without sleeping. A std `Mutex` guards the buckets: held for one map operation, never across an
//! await.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Principal, Role};

/// Requests per second, by role and by token name; a token's own entry wins. No entry: no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimits {
    pub by_role: Vec<(Role, f64)>,
    pub by_token: Vec<(String, f64)>,
}

impl RateLimits {
    fn rate_for(&self, who: &Principal) -> Option<f64> {
        let by_token = self
            .by_token
            .iter()
            .find(|(name, _)| **name == *who.name)
            .map(|(_, rate)| *rate);
        let by_role = || {
            self.by_role
                .iter()
                .find(|(role, _)| *role == who.role)
                .map(|(_, rate)| *rate)
        };
        by_token.or_else(by_role).filter(|rate| *rate > 0.0)
    }
}

struct Bucket {
    tokens: f64,
    at_ms: u64,
}

#[derive(Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<std::sync::Arc<str>, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `who`'s bucket at `now_ms`; when it is empty, returns how many
    /// milliseconds until it holds one again.
    pub fn take(&self, who: &Principal, now_ms: u64) -> Result<(), u64> {
        let Some(rate) = self.limits.rate_for(who) else {
            return Ok(());
        };
        let burst = (rate * 2.0).max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(who.name.clone()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed_s = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_s * rate).min(burst);
        bucket.at_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, role: Role) -> Principal {
        Principal {
            token_id: name.into(),
            name: name.into(),
            role,
            capabilities: None,
            groups: None,
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate_and_says_how_long_to_wait() {
        let limits = RateLimits {
            by_role: vec![(Role::Client, 10.0)],
            by_token: vec![("slow".into(), 1.0), ("free".into(), 0.0)],
        };
        let limiter = RateLimiter::new(limits);
        let ci = who("ci", Role::Client);
        // A burst of two seconds' worth, then empty.
        for _ in 0..20 {
            assert_eq!(limiter.take(&ci, 0), Ok(()));
        }
        assert_eq!(limiter.take(&ci, 0), Err(100));
        // 100 ms later one more.
        assert_eq!(limiter.take(&ci, 100), Ok(()));
        assert!(limiter.take(&ci, 100).is_err());
        // A token's own limit wins over its role's; 0 means none.
        let slow = who("slow", Role::Client);
        assert!(limiter.take(&slow, 0).is_ok() && limiter.take(&slow, 0).is_ok());
        assert_eq!(limiter.take(&slow, 0), Err(1000));
        let free = who("free", Role::Client);
        assert!((0..1000).all(|_| limiter.take(&free, 0).is_ok()));
        // No limit for a role without one.
        let admin = who("root", Role::Admin);
        assert!((0..1000).all(|_| limiter.take(&admin, 0).is_ok()));
    }
}
