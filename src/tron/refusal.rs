//! What a refused answer means (a suspension, or a passing HTTP error) and how long every
//! caller pauses when bare 5xx answers keep coming.

use std::time::Duration;

use actors::chain::ChainError;

/// The longest pause a node may ask for; a longer one is taken as this (a lying or broken
/// node must not stop the daemon for hours).
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// How long every caller pauses at the `level`-th escalation (from 1) of a streak of bare 5xx
/// answers: the retry backoff, doubled at each level, up to the penalty.
pub(super) fn unavailable_pause(level: u32, backoff: Duration, penalty: Duration) -> Duration {
    let doublings = level.saturating_sub(1).min(16);
    backoff.saturating_mul(1 << doublings).min(penalty)
}

/// What an answer means when it is not a usable one: `None` for a 2xx without TronGrid's
/// suspension notice.
///
/// - TronGrid's notice (`{"Error":"The key exceeds the frequency limit(15), and the query server
///   is suspended for 30s"}`, with any status, 200 included): a suspension for the time it says,
///   else `Retry-After`, else the configured penalty.
/// - 429 and 403 without it: a suspension for `Retry-After`, else the penalty.
/// - 503 with `Retry-After`: the node asks for that pause.
/// - any other status, a bare 502/503/504 included: [`ChainError::Http`], a transient error
///   (proxies and load balancers answer so for a moment).
pub(super) fn refusal(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    penalty: Duration,
) -> Option<ChainError> {
    let rate_limited = |pause: Duration| ChainError::RateLimited {
        status,
        pause_ms: u64::try_from(pause.min(MAX_PAUSE).as_millis()).unwrap_or(u64::MAX),
    };
    if let Some(notice) = suspension_notice(body) {
        return Some(rate_limited(notice.or(retry_after).unwrap_or(penalty)));
    }
    match (status, retry_after) {
        (200..=299, _) => None,
        (429 | 403, after) => Some(rate_limited(after.unwrap_or(penalty))),
        (503, Some(after)) => Some(rate_limited(after)),
        _ => Some(ChainError::Http { status }),
    }
}

/// TronGrid's suspension notice: `Some(how long it says)` (`None` inside when it does not say),
/// or `None` when the body is not such a notice.
pub(super) fn suspension_notice(body: &[u8]) -> Option<Option<Duration>> {
    const LIMIT: usize = 1024;
    if body.len() > LIMIT {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start();
    if !(text.starts_with("{\"Error\"")
        && (text.contains("exceeds the frequency limit") || text.contains("is suspended")))
    {
        return None;
    }
    let said = text.split_once("suspended for").and_then(|(_, rest)| {
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok().map(Duration::from_secs)
    });
    Some(said)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn what_a_refusal_means() {
        let penalty = Duration::from_secs(30);
        let notice = |secs: &str| {
            format!(
                r#"{{"Error":"The key exceeds the frequency limit(15), and the query server is suspended for {secs}"}}"#
            )
        };
        let limited = |status, pause_ms| Some(ChainError::RateLimited { status, pause_ms });
        let cases: Vec<(u16, Option<u64>, String, Option<ChainError>)> = vec![
            (200, None, "{}".into(), None),
            (200, None, notice("27s"), limited(200, 27_000)),
            (503, None, notice("30s"), limited(503, 30_000)),
            (403, Some(5), notice("s"), limited(403, 5_000)),
            (429, None, notice("s"), limited(429, 30_000)),
            (403, None, String::new(), limited(403, 30_000)),
            (
                429,
                Some(2),
                "Too Many Requests".into(),
                limited(429, 2_000),
            ),
            (503, Some(4), String::new(), limited(503, 4_000)),
            (200, None, notice("99999s"), limited(200, 600_000)),
            (
                503,
                None,
                "Service Unavailable".into(),
                Some(ChainError::Http { status: 503 }),
            ),
            (
                502,
                None,
                String::new(),
                Some(ChainError::Http { status: 502 }),
            ),
            (
                504,
                Some(9),
                String::new(),
                Some(ChainError::Http { status: 504 }),
            ),
            (
                500,
                None,
                String::new(),
                Some(ChainError::Http { status: 500 }),
            ),
            (
                404,
                None,
                String::new(),
                Some(ChainError::Http { status: 404 }),
            ),
        ];
        for (status, retry_after, body, expected) in cases {
            let got = refusal(
                status,
                retry_after.map(Duration::from_secs),
                body.as_bytes(),
                penalty,
            );
            assert_eq!(
                got, expected,
                "HTTP {status}, Retry-After {retry_after:?}, {body}"
            );
        }
    }

    #[test]
    fn pauses_for_persistent_5xx_double_up_to_the_penalty() {
        let backoff = Duration::from_millis(250);
        let penalty = Duration::from_secs(30);
        let pauses: Vec<u128> = (1..=10)
            .map(|level| unavailable_pause(level, backoff, penalty).as_millis())
            .collect();
        assert_eq!(
            pauses,
            vec![250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(unavailable_pause(u32::MAX, backoff, penalty), penalty);
    }
}
