//! Per-object exponential failure backoff for `--retry-interval-start` /
//! `--retry-interval-max`.
//!
//! Mirrors client-go's `ItemExponentialFailureRateLimiter`, which the upstream
//! sidecars put in their work queues: the n-th consecutive failure of an object
//! (counting from 0) waits `start × 2ⁿ`, capped at `max`, and a success forgets
//! the object.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::flags::RetryArgs;

/// Failure counters per key. Cheap to share behind an `Arc`; all methods take
/// `&self` and lock an internal mutex for a few instructions only.
#[derive(Debug)]
pub struct PerObjectBackoff<K> {
    start: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq> PerObjectBackoff<K> {
    /// A backoff starting at `start` and doubling up to `max`. If `max < start`
    /// every delay is `max`, as in client-go.
    pub fn new(start: Duration, max: Duration) -> Self {
        PerObjectBackoff {
            start,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// A backoff configured from `--retry-interval-start` / `--retry-interval-max`.
    pub fn from_args(args: &RetryArgs) -> Self {
        Self::new(args.retry_interval_start, args.retry_interval_max)
    }

    /// Records one more failure of `key` and returns how long to wait before
    /// retrying it: `start × 2^(failures before this call)`, capped at `max`.
    pub fn next_delay(&self, key: &K) -> Duration
    where
        K: Clone,
    {
        let exp = {
            let mut map = self.lock();
            let n = map.entry(key.clone()).or_insert(0);
            let exp = *n;
            *n = n.saturating_add(1);
            exp
        };
        delay_for(self.start, self.max, exp)
    }

    /// Forgets `key` after a success, so its next failure starts again at `start`.
    pub fn reset(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Consecutive failures recorded for `key` (client-go's `NumRequeues`).
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, u32>> {
        // The map holds only counters, which stay consistent even if a holder panicked.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `start × 2^exp` capped at `max`, without overflow.
pub fn delay_for(start: Duration, max: Duration, exp: u32) -> Duration {
    let factor = 2u32.checked_pow(exp);
    match factor.and_then(|f| start.checked_mul(f)) {
        Some(d) if d <= max => d,
        _ => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn doubles_and_caps() {
        let b = PerObjectBackoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let k = "ns/pvc".to_owned();
        let got: Vec<u64> = (0..12).map(|_| b.next_delay(&k).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.failures(&k), 12);
        b.reset(&k);
        assert_eq!(b.failures(&k), 0);
        assert_eq!(b.next_delay(&k), Duration::from_secs(1));
    }

    #[test]
    fn keys_are_independent() {
        let b = PerObjectBackoff::new(Duration::from_millis(10), Duration::from_secs(1));
        b.next_delay(&1);
        b.next_delay(&1);
        assert_eq!(b.next_delay(&2), Duration::from_millis(10));
        assert_eq!(b.failures(&1), 2);
        assert_eq!(b.failures(&3), 0);
    }

    #[test]
    fn no_overflow_for_huge_exponents() {
        let max = Duration::from_secs(300);
        assert_eq!(delay_for(Duration::from_secs(1), max, 40), max);
        assert_eq!(delay_for(Duration::from_secs(1), max, u32::MAX), max);
        assert_eq!(
            delay_for(Duration::from_secs(10), Duration::from_secs(1), 0),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn thread_safe() {
        let b = Arc::new(PerObjectBackoff::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
        ));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        b.next_delay(&"k");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.failures(&"k"), 400);
    }
}
