//! When to retry and how long to wait: exponential backoff with full jitter (a uniform draw
//! below a cap that doubles per attempt, so many clients that failed together do not retry
//! together), and a server's `Retry-After` honoured up to the configured maximum.

use std::time::Duration;

/// Whether an HTTP status is worth another attempt: the server is overloaded, rate-limiting
/// or failed transiently. Other 4xx are the request's fault and fail at once.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..600).contains(&status) && status != 501
}

/// The wait before retry number `attempt` (0 for the first retry). `unit` is a uniform draw in
/// `[0, 1)`; `retry_after` a delay the server asked for.
pub fn backoff(
    attempt: u32,
    base_ms: u64,
    max_ms: u64,
    unit: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = base_ms
        .saturating_mul(1u64.checked_shl(attempt.min(62)).unwrap_or(u64::MAX))
        .min(max_ms);
    let jittered = Duration::from_millis((cap as f64 * unit.clamp(0.0, 1.0)) as u64);
    match retry_after {
        Some(asked) => asked.min(Duration::from_millis(max_ms)).max(jittered),
        None => jittered,
    }
}

/// `Retry-After` in its delay-seconds form (the HTTP-date form is rare from these servers and
/// falls back to the jittered backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(attempt: u32, unit: f64, retry_after: Option<u64>, expected_ms: u64) {
        let got = backoff(
            attempt,
            500,
            30_000,
            unit,
            retry_after.map(Duration::from_secs),
        );
        assert_eq!(got, Duration::from_millis(expected_ms));
    }

    #[test]
    fn backoff_doubles_with_full_jitter_and_caps() {
        check(0, 0.999_999, None, 499);
        check(0, 0.5, None, 250);
        check(3, 0.5, None, 2_000);
        check(10, 0.5, None, 15_000);
        check(200, 1.0, None, 30_000);
        check(0, 0.0, None, 0);
        // The server's wish wins over a shorter draw, within the maximum.
        check(0, 0.5, Some(3), 3_000);
        check(0, 0.5, Some(3_600), 30_000);
        check(6, 0.9, Some(1), 27_000);
    }

    #[test]
    fn statuses_and_retry_after() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 422, 501] {
            assert!(!retryable_status(s), "{s}");
        }
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
