//! Kubernetes client construction with client-go's QPS/burst throttling.
//!
//! Configuration follows csi-lib-utils `config.BuildConfig`: a kubeconfig file
//! when one is named (`KUBECONFIG` env, else `--kubeconfig`, see
//! [`CommonArgs::kubeconfig_path`]), otherwise the in-cluster service-account
//! configuration. Unlike `kube::Config::infer`, `~/.kube/config` is never
//! consulted implicitly, so a sidecar behaves the same on a developer machine
//! as in a pod.
//!
//! kube has no QPS/burst settings, so [`QpsLayer`] adds client-go's token bucket
//! (`flowcontrol.NewTokenBucketRateLimiter`) to the request stack: the bucket
//! starts full with `burst` tokens and refills at `qps` per second; every
//! request, including the opening of a watch, takes one token before it is
//! sent. Limits follow client-go's `rest.Config` rules: QPS `0` means the
//! default 5, burst `0` the default 10, and a negative QPS disables throttling.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::HeaderValue;
use kube::client::ClientBuilder;

use crate::Error;
use crate::flags::CommonArgs;

/// client-go's `rest.DefaultQPS`, used when QPS is 0.
pub const DEFAULT_QPS: f64 = 5.0;
/// client-go's `rest.DefaultBurst`, used when burst is 0.
pub const DEFAULT_BURST: u32 = 10;

/// A client for `args` with `--kube-api-qps` / `--kube-api-burst`, sending
/// `User-Agent: <user_agent>`.
///
/// Errors: [`Error::Kubeconfig`], [`Error::InClusterConfig`], [`Error::ClientBuild`].
pub async fn client(args: &CommonArgs, user_agent: &str) -> Result<kube::Client, Error> {
    client_with_limits(args, args.kube_api_qps, args.kube_api_burst, user_agent).await
}

/// Like [`client`] with explicit limits, for the places upstream uses a
/// different rate (e.g. the provisioner's capacity client) or a separate client
/// (leader election gets its own so the main client's throttling cannot starve
/// lease renewals).
pub async fn client_with_limits(
    args: &CommonArgs,
    qps: f64,
    burst: u32,
    user_agent: &str,
) -> Result<kube::Client, Error> {
    let config = load_config(args).await?;
    client_from_config(config, qps, burst, user_agent)
}

/// Loads the configuration as described in the module documentation.
pub async fn load_config(args: &CommonArgs) -> Result<kube::Config, Error> {
    match args.kubeconfig_path() {
        Some(path) => {
            let shown = path.display().to_string();
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&path).map_err(|source| Error::Kubeconfig {
                    path: shown.clone(),
                    source,
                })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: shown,
                    source,
                })
        }
        None => kube::Config::incluster().map_err(Error::InClusterConfig),
    }
}

/// Builds a client from an already loaded configuration (kube's default stack:
/// auth, retries of 429/503/504, tracing) with a [`QpsLayer`] in front.
/// A `user_agent` that is not a valid header value is ignored.
pub fn client_from_config(
    config: kube::Config,
    qps: f64,
    burst: u32,
    user_agent: &str,
) -> Result<kube::Client, Error> {
    let config = with_user_agent(config, user_agent);
    let builder = ClientBuilder::try_from(config).map_err(Error::ClientBuild)?;
    Ok(builder.with_layer(&QpsLayer::new(qps, burst)).build())
}

/// Builds the client of [`client_from_config`] and, sharing its token
/// bucket, a [`Prepaid`] client for writes that must be based on the
/// freshest cached version.
///
/// Both spend the one `qps`/`burst` budget, so the process's request rate is
/// what the flags say, as with client-go.
pub fn clients_from_config(
    config: kube::Config,
    qps: f64,
    burst: u32,
    user_agent: &str,
) -> Result<(kube::Client, Prepaid), Error> {
    let layer = QpsLayer::new(qps, burst);
    let config = with_user_agent(config, user_agent);
    let throttled = ClientBuilder::try_from(config.clone())
        .map_err(Error::ClientBuild)?
        .with_layer(&layer)
        .build();
    let unthrottled = ClientBuilder::try_from(config)
        .map_err(Error::ClientBuild)?
        .build();
    Ok((
        throttled,
        Prepaid {
            budget: layer.budget(),
            client: unthrottled,
        },
    ))
}

/// A client whose requests are paid for before they are built.
///
/// Under client-go's throttle a request waits for its token after its body
/// is built; with a backlog that is seconds, and an Update built from the
/// cache meanwhile goes stale and ends in 409 Conflict (one wasted request,
/// then a retry). Taking the token first with [`ApiBudget::acquire`], then
/// reading the cache, then sending through [`Prepaid::client`] (which does
/// not wait again) sends what the cache holds at the moment of sending.
///
/// Every request sent through `client` must be preceded by exactly one
/// `budget.acquire()`.
#[derive(Clone)]
pub struct Prepaid {
    /// The token bucket shared with the throttled client.
    pub budget: ApiBudget,
    /// A client without its own throttle.
    pub client: kube::Client,
}

impl std::fmt::Debug for Prepaid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepaid")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// A handle on a [`QpsLayer`]'s token bucket.
#[derive(Clone, Debug)]
pub struct ApiBudget {
    limiter: Option<Arc<Bucket>>,
}

impl ApiBudget {
    /// Waits for and spends one token (returns at once when unlimited).
    pub async fn acquire(&self) {
        if let Some(l) = &self.limiter {
            take_token(l.clone()).await;
        }
    }

    /// Waits for and spends one token at low priority: it goes only when no
    /// [`acquire`](Self::acquire) or throttled request is waiting. For work
    /// that starts something new (a provisioner recording its intent before
    /// CreateVolume), so that under a backlog the work already started (PV
    /// creates) finishes first and the first results come early; the total
    /// rate is unchanged.
    pub async fn acquire_low(&self) {
        let Some(b) = &self.limiter else { return };
        let _waiting = Waiting::new(&b.waiting_low);
        loop {
            let wait = if b.waiting.load(Ordering::Acquire) > 0 {
                b.period
            } else {
                match b.limiter.check() {
                    Ok(()) => return,
                    Err(not_until) => not_until.wait_time_from(b.clock.now()),
                }
            };
            // Polled no faster than every 10 ms and at least once per refill.
            tokio::time::sleep(wait.clamp(
                Duration::from_millis(10),
                b.period.max(Duration::from_millis(10)),
            ))
            .await;
        }
    }

    /// Waits until [`try_acquire_spare`](Self::try_acquire_spare) succeeds,
    /// looking once per refill: the lowest priority, for writes nobody waits
    /// for (events).
    pub async fn acquire_spare(&self) {
        let Some(b) = &self.limiter else { return };
        while !self.try_acquire_spare() {
            tokio::time::sleep(b.period.max(Duration::from_millis(10))).await;
        }
    }

    /// Spends a token only if one is free and no request is waiting for
    /// one; `true` when spent (always when unlimited). For bookkeeping
    /// writes that must happen but should not delay the work users wait for
    /// (a provisioner's PV creates) while the budget is the bottleneck: the
    /// caller retries later instead of holding a worker.
    pub fn try_acquire_spare(&self) -> bool {
        match &self.limiter {
            None => true,
            Some(b) => {
                b.waiting.load(Ordering::Acquire) == 0
                    && b.waiting_low.load(Ordering::Acquire) == 0
                    && b.limiter.check().is_ok()
            }
        }
    }
}

/// `config` sending `user_agent` (ignored when not a valid header value).
fn with_user_agent(mut config: kube::Config, user_agent: &str) -> kube::Config {
    if let Ok(v) = HeaderValue::from_str(user_agent) {
        config
            .headers
            .retain(|(k, _)| k != http::header::USER_AGENT);
        config.headers.push((http::header::USER_AGENT, v));
    }
    config
}

/// A tower layer holding one token bucket shared by every service it wraps.
#[derive(Clone, Debug)]
pub struct QpsLayer {
    limiter: Option<Arc<Bucket>>,
}

impl QpsLayer {
    /// A bucket with `burst` tokens refilled at `qps` per second, using
    /// client-go's rules: `qps == 0` → 5, `burst == 0` → 10, `qps < 0`, NaN,
    /// infinite or above 10⁹ → unlimited.
    pub fn new(qps: f64, burst: u32) -> Self {
        let qps = if qps == 0.0 { DEFAULT_QPS } else { qps };
        let burst = NonZeroU32::new(burst)
            .or(NonZeroU32::new(DEFAULT_BURST))
            .unwrap_or(NonZeroU32::MIN);
        let limiter = (qps > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / qps).ok())
            .flatten()
            .and_then(|period| Some((period, Quota::with_period(period)?)))
            .map(|(period, q)| {
                let clock = TokioClock::new();
                Arc::new(Bucket {
                    limiter: RateLimiter::direct_with_clock(q.allow_burst(burst), clock.clone()),
                    clock,
                    waiting: AtomicUsize::new(0),
                    waiting_low: AtomicUsize::new(0),
                    period,
                })
            });
        QpsLayer { limiter }
    }

    /// A layer that never throttles.
    pub fn unlimited() -> Self {
        QpsLayer { limiter: None }
    }

    /// Whether this layer throttles at all.
    pub fn is_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// A handle on this layer's token bucket, for [`Prepaid`] requests.
    pub fn budget(&self) -> ApiBudget {
        ApiBudget {
            limiter: self.limiter.clone(),
        }
    }
}

impl<S> tower::Layer<S> for QpsLayer {
    type Service = QpsService<S>;

    fn layer(&self, inner: S) -> QpsService<S> {
        QpsService {
            inner,
            limiter: self.limiter.clone(),
            wait: None,
            has_token: false,
        }
    }
}

/// The service produced by [`QpsLayer`]: `poll_ready` is pending until a token
/// is available and the inner service is ready; `call` spends the token.
pub struct QpsService<S> {
    inner: S,
    limiter: Option<Arc<Bucket>>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    // A token taken in poll_ready but not yet spent, kept across an inner
    // not-ready so one request never takes two tokens.
    has_token: bool,
}

impl<S> std::fmt::Debug for QpsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QpsService")
            .field("limited", &self.limiter.is_some())
            .field("has_token", &self.has_token)
            .finish_non_exhaustive()
    }
}

/// governor's clock reading Tokio's time, the clock the waiters sleep on:
/// a token is due exactly when a `tokio::time::sleep` until it ends, and
/// paused test time (`start_paused`) drives the refill as well.
/// Instants are durations since the bucket was made.
#[derive(Clone, Debug)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The token bucket's rate limiter: one shared state, on [`TokioClock`].
type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// One token bucket and the number of requests waiting on it.
#[derive(Debug)]
struct Bucket {
    limiter: Limiter,
    /// The clock `limiter` reads, for computing how long to sleep.
    clock: TokioClock,
    /// Requests waiting at normal priority.
    waiting: AtomicUsize,
    /// Requests waiting at low priority ([`ApiBudget::acquire_low`]).
    waiting_low: AtomicUsize,
    /// Time to refill one token (1/qps).
    period: Duration,
}

/// Counts one waiter for as long as it lives (a dropped wait included).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits for one token, sleeping on Tokio's timer rather than governor's own.
async fn take_token(bucket: Arc<Bucket>) {
    if bucket.limiter.check().is_ok() {
        return;
    }
    let _waiting = Waiting::new(&bucket.waiting);
    loop {
        match bucket.limiter.check() {
            Ok(()) => return,
            Err(not_until) => {
                tokio::time::sleep(not_until.wait_time_from(bucket.clock.now())).await
            }
        }
    }
}

impl<S, Req> tower::Service<Req> for QpsService<S>
where
    S: tower::Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.has_token
            && let Some(limiter) = &self.limiter
        {
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(take_token(limiter.clone())));
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.wait = None;
                    self.has_token = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> S::Future {
        self.has_token = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, Service, ServiceExt};

    fn counting() -> (
        Arc<AtomicUsize>,
        impl Service<(), Response = (), Error = std::convert::Infallible>,
    ) {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        let svc = tower::service_fn(move |()| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(()) }
        });
        (n, svc)
    }

    fn poll_ready_now<S: Service<()>>(svc: &mut S) -> bool {
        let mut cx = Context::from_waker(noop_waker_ref());
        matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    #[tokio::test]
    async fn burst_passes_then_throttles() {
        // One token per 1000 s: nothing refills during the test.
        let (calls, inner) = counting();
        let mut svc = QpsLayer::new(0.001, 3).layer(inner);
        for _ in 0..3 {
            assert!(poll_ready_now(&mut svc));
            svc.call(()).await.unwrap();
        }
        assert!(
            !poll_ready_now(&mut svc),
            "4th request must wait for a token"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn ready_twice_takes_one_token() {
        let (_, inner) = counting();
        let mut svc = QpsLayer::new(0.001, 2).layer(inner);
        assert!(poll_ready_now(&mut svc));
        assert!(poll_ready_now(&mut svc));
        svc.call(()).await.unwrap();
        assert!(poll_ready_now(&mut svc));
        svc.call(()).await.unwrap();
        assert!(!poll_ready_now(&mut svc));
    }

    #[tokio::test]
    async fn refills_at_qps() {
        // 1000 QPS, burst 1: after spending the token a new one arrives in ~1 ms.
        let (calls, inner) = counting();
        let mut svc = QpsLayer::new(1000.0, 1).layer(inner);
        for _ in 0..5 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn client_go_limit_rules() {
        assert!(QpsLayer::new(0.0, 0).is_limited());
        assert!(QpsLayer::new(5.0, 10).is_limited());
        assert!(!QpsLayer::new(-1.0, 10).is_limited());
        assert!(!QpsLayer::new(f64::NAN, 10).is_limited());
        assert!(!QpsLayer::new(f64::INFINITY, 10).is_limited());
        assert!(!QpsLayer::unlimited().is_limited());
    }

    #[tokio::test]
    async fn default_burst_when_zero() {
        let (_, inner) = counting();
        let mut svc = QpsLayer::new(0.001, 0).layer(inner);
        for _ in 0..DEFAULT_BURST {
            assert!(poll_ready_now(&mut svc));
            svc.call(()).await.unwrap();
        }
        assert!(!poll_ready_now(&mut svc));
    }

    #[tokio::test]
    async fn the_budget_spends_the_layers_tokens() {
        let (_, inner) = counting();
        let layer = QpsLayer::new(0.001, 2);
        let mut svc = layer.layer(inner);
        layer.budget().acquire().await;
        assert!(poll_ready_now(&mut svc), "one token left for the layer");
        svc.call(()).await.unwrap();
        assert!(!poll_ready_now(&mut svc), "the budget took the other");
        // Unlimited: acquiring never waits.
        for _ in 0..100 {
            QpsLayer::unlimited().budget().acquire().await;
        }
    }

    /// Tokio time since `start`, for asserting when a paused-time waiter
    /// got its token.
    fn since(start: tokio::time::Instant) -> Duration {
        tokio::time::Instant::now() - start
    }

    // The priority tests run on paused time: the bucket reads Tokio's clock
    // (TokioClock), every sleep ends at its deadline, and the instants below
    // are exact.

    #[tokio::test(start_paused = true)]
    async fn a_spare_token_goes_to_others_first() {
        // 20 QPS: one token per 50 ms.
        let budget = QpsLayer::new(20.0, 2).budget();
        let start = tokio::time::Instant::now();
        assert!(budget.try_acquire_spare(), "idle bucket: spare token");
        budget.acquire().await; // now empty
        assert!(!budget.try_acquire_spare(), "no token left");

        // A token is free, but a request is waiting for one: the spare
        // request yields until nobody waits.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bucket = budget.limiter.as_ref().expect("limited");
        let waiting = Waiting::new(&bucket.waiting);
        assert!(!budget.try_acquire_spare(), "a normal waiter comes first");
        drop(waiting);
        let low_waiting = Waiting::new(&bucket.waiting_low);
        assert!(!budget.try_acquire_spare(), "a low waiter comes first");
        drop(low_waiting);
        assert!(budget.try_acquire_spare(), "nobody waits: taken");
        assert_eq!(since(start), Duration::from_millis(50));

        // Through the real paths: a normal request and a spare one wait on
        // the empty bucket; the normal one gets the 100 ms token, the
        // spare one the 150 ms token.
        let (b, spare_start) = (budget.clone(), tokio::time::Instant::now());
        let spare = tokio::spawn(async move {
            b.acquire_spare().await;
            since(spare_start)
        });
        let b = budget.clone();
        let normal = tokio::spawn(async move {
            b.acquire().await;
            since(spare_start)
        });
        assert_eq!(normal.await.unwrap(), Duration::from_millis(50));
        assert_eq!(spare.await.unwrap(), Duration::from_millis(100));
        assert!(QpsLayer::unlimited().budget().try_acquire_spare());
    }

    #[tokio::test(start_paused = true)]
    async fn low_priority_goes_after_normal() {
        // 20 QPS, burst 1: tokens at 50 ms, 100 ms, 150 ms.
        let budget = QpsLayer::new(20.0, 1).budget();
        let start = tokio::time::Instant::now();
        budget.acquire().await; // the bucket is now empty
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (b, o) = (budget.clone(), order.clone());
        let low = tokio::spawn(async move {
            b.acquire_low().await;
            o.lock().unwrap().push(("low", since(start)));
        });
        // Let the low waiter register before the normal one arrives.
        tokio::task::yield_now().await;
        assert!(!budget.try_acquire_spare(), "a low waiter blocks spare use");
        let (b, o) = (budget.clone(), order.clone());
        let normal = tokio::spawn(async move {
            b.acquire().await;
            o.lock().unwrap().push(("normal", since(start)));
        });
        normal.await.unwrap();
        low.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            [
                ("normal", Duration::from_millis(50)),
                ("low", Duration::from_millis(100))
            ]
        );
        QpsLayer::unlimited().budget().acquire_low().await;
        QpsLayer::unlimited().budget().acquire_spare().await;
        // A spare token comes once nobody waits: the next one, at 150 ms.
        budget.acquire_spare().await;
        assert_eq!(since(start), Duration::from_millis(150));
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let (_, inner) = counting();
        let mut svc = QpsLayer::new(-1.0, 1).layer(inner);
        for _ in 0..100 {
            assert!(poll_ready_now(&mut svc));
            svc.call(()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn kubeconfig_file_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: ns1\n\
             current-context: x\nusers:\n- name: u\n  user:\n    token: abc\n",
        )
        .unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&path).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(cfg.default_namespace, "ns1");
        let client = client_from_config(cfg, 5.0, 10, "csi-test/v0").unwrap();
        assert_eq!(client.default_namespace(), "ns1");
    }
}
