//! Per-registry request limits (`registry { max_concurrency, rate_limit }`):
//! one [`Limiter`] per registry, shared by every client of it (the mirror's
//! and the one copies read an upstream with), so that the limits hold for
//! the registry as a whole whatever `--parallelism` runs at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits of one registry, as configured (`None`: no limit, or the
/// client's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
    /// At most `.0` requests started per `.1`.
    pub rate: Option<(u32, Duration)>,
    /// Attempts per request in all.
    pub retry_attempts: Option<u32>,
    /// The longest wait between attempts (also caps `Retry-After`).
    pub retry_max_delay: Option<Duration>,
}

/// Admits requests to one registry: at most `max_concurrency` in flight,
/// and starts spaced evenly so that at most `count` start per period.
#[derive(Debug)]
pub struct Limiter {
    slots: Option<Arc<Semaphore>>,
    interval: Option<Duration>,
    /// When the next request may start.
    next: Mutex<Option<Instant>>,
}

/// A request's place in a [`Limiter`]: held while the request is in
/// flight.
#[derive(Debug)]
pub struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
}

impl Limiter {
    /// A limiter for `limits` (`None` when they limit nothing).
    pub fn for_limits(limits: &RegistryLimits) -> Option<Arc<Limiter>> {
        if limits.max_concurrency.is_none() && limits.rate.is_none() {
            return None;
        }
        Some(Arc::new(Limiter {
            slots: limits
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
            interval: limits.rate.map(|(count, per)| per / count.max(1)),
            next: Mutex::new(None),
        }))
    }

    /// Waits for a free slot, then for the request's turn under the rate.
    pub async fn admit(&self) -> Admission {
        let slot = match &self.slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(interval) = self.interval {
            let start = {
                let mut next = self
                    .next
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let start = next.map_or(now, |n| n.max(now));
                *next = Some(start + interval);
                start
            };
            tokio::time::sleep_until(start).await;
        }
        Admission { _slot: slot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_are_spaced_by_the_rate() {
        let l = Limiter::for_limits(&RegistryLimits {
            rate: Some((10, Duration::from_secs(1))),
            ..RegistryLimits::default()
        })
        .unwrap_or_else(|| panic!("a limiter"));
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(l.admit().await);
        }
        // the first starts at once, each next at least 100 ms later
        assert!(Instant::now() - t0 >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let l = Limiter::for_limits(&RegistryLimits {
            max_concurrency: Some(1),
            ..RegistryLimits::default()
        })
        .unwrap_or_else(|| panic!("a limiter"));
        let held = l.admit().await;
        let second = tokio::time::timeout(Duration::from_millis(50), l.admit()).await;
        assert!(second.is_err(), "a second request waits for the first");
        drop(held);
        let third = tokio::time::timeout(Duration::from_secs(5), l.admit()).await;
        assert!(third.is_ok(), "admitted once the first is done");
    }

    #[test]
    fn no_limits_no_limiter() {
        assert!(Limiter::for_limits(&RegistryLimits {
            retry_attempts: Some(3),
            ..RegistryLimits::default()
        })
        .is_none());
    }
}
