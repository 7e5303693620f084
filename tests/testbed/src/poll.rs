//! Waiting for a condition in a test.

use std::future::Future;
use std::time::Duration;

use crate::Error;

/// Calls `check` every 250 ms until it returns `Some`, and returns that
/// value. Errors: the first error `check` returns, or
/// [`Error::PollTimeout`] once `timeout` has passed. Tests' own error type
/// (`anyhow`), so `?` works inside `check`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::PollTimeout {
                what: what.to_string(),
                waited: timeout,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_or_times_out() {
        let mut n = 0;
        let v = poll("three calls", Duration::from_secs(5), || {
            n += 1;
            let done = (n == 3).then_some(n);
            async move { Ok(done) }
        })
        .await;
        assert_eq!(v.unwrap(), 3);
        let never: anyhow::Result<()> =
            poll("nothing", Duration::from_millis(300), || async { Ok(None) }).await;
        assert_eq!(
            never.unwrap_err().to_string(),
            "timed out after 300ms waiting for nothing"
        );
    }
}
