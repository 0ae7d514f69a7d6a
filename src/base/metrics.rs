//! Every metric, defined once with its help text and bounded labels, and
//! rendered at `/metrics` in the Prometheus (OpenMetrics) text format.
//!
//! No label carries a user, a path or anything else a client chooses: rule
//! names and issuers come from the config, every other label from a fixed
//! list in this file.
//!
//! The per-request counters cost one uncontended atomic add: the counters
//! and the histogram a forward-auth check touches are [`sharded`] per worker
//! thread, so two cores answering checks never write the same cache line.
//! The decision counters of
//! every (outcome, rule) pair and the upstream counters of every rule are
//! looked up once, when the rules are compiled (at start-up and on SIGHUP),
//! and kept beside the rules ([`RuleMetrics`], [`UpstreamMetrics`]); a check
//! indexes them by the rule's position, with no lock, no allocation and no
//! hashing of label sets. Histograms are [`Histogram`]s of atomic buckets
//! (prometheus-client's own takes a lock per observation).

pub mod sharded;

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use sharded::Sharded;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The git revision the binary was built from (`unknown` without git).
pub const REVISION: &str = env!("PORTCULLIS_GIT_REVISION");

/// Bucket bounds of the forward-auth check and session store latencies, in seconds.
const FAST_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Bucket bounds of upstream latencies, in seconds.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Labels of a family: name and value pairs.
type Labels = Vec<(&'static str, String)>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Labels, HotCounter>,
    /// `portcullis_check_duration_seconds`: forward-auth checks, end to end.
    pub check_duration: Histogram,
    logins: Family<Labels, Counter>,
    refreshes: Family<Labels, Counter>,
    backchannel_logouts: Family<Labels, Counter>,
    session_lookups: [HotCounter; 3],
    /// `portcullis_store_errors_total`: session store operations that failed.
    pub store_errors: Counter,
    /// `portcullis_store_duration_seconds`: session loads from the store.
    pub store_duration: Histogram,
    jwks_fetches: Family<Labels, Counter>,
    upstream_requests: Family<Labels, Counter>,
    upstream_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// `portcullis_open_connections`: client connections open now, on every listener.
    pub open_connections: Gauge,
    /// `portcullis_open_tunnels`: upgraded (WebSocket) connections to upstreams open now.
    pub open_tunnels: Gauge,
    config_reloads: Family<Labels, Counter>,
    basic_auth: Family<Labels, Counter>,
    /// `portcullis_basic_auth_hash_checks_total`: password hashes checked for Basic credentials.
    pub basic_auth_hash_checks: Counter,
}

/// The `reason` label of a failed login (`portcullis_logins_total`); the
/// login error maps each of its failures to one of these.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LoginFailure {
    /// The IdP redirected back with `error=`.
    IdpError,
    /// The flow cookie or the callback parameters did not hold up.
    State,
    /// The IdP refused the code.
    InvalidGrant,
    /// No ID token, or one that did not verify.
    IdTokenRejected,
    /// The IdP could not be reached.
    IdpUnreachable,
    /// Anything else (discovery, token endpoint, userinfo, session store).
    Other,
}

/// What a forward-auth check or a proxied request was answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Let through (a signed-in user the rule permits, or a public rule).
    Allow,
    /// Refused: the rule denies everybody, or this user.
    Deny,
    /// No (valid) session on a rule that needs one: sent to the login.
    Unauthenticated,
    /// A bearer token that failed verification.
    InvalidToken,
    /// The request could not be judged (malformed host, path or forwarding headers).
    BadRequest,
    /// The session store could not answer.
    Error,
}

/// Where a session was found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lookup {
    /// In this instance's cache.
    LocalCache,
    /// In the session store.
    Store,
    /// Nowhere (expired, ended or unknown).
    Miss,
}

/// The decision counters of one compiled rule set, by rule position.
pub struct RuleMetrics {
    rules: Box<[[HotCounter; 6]]>,
    default: [HotCounter; 6],
    none: [HotCounter; 6],
}

/// A counter on the request path, [`sharded`] per worker thread.
#[derive(Clone, Debug)]
pub struct HotCounter(Arc<Sharded>);

/// The counters and latency histogram of one rule's upstream.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    /// 1xx to 5xx, then no answer (connect failure, timeout).
    status: [Counter; 6],
    duration: Histogram,
}

/// A latency histogram of atomic buckets: observing is two atomic adds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// One slot per bound, then the `+Inf` bucket (not cumulative), then the
    /// sum in nanoseconds.
    counts: Sharded,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The text of `/metrics`.
pub fn render() -> String {
    let mut out = String::with_capacity(8192);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &global().registry) {
        let _ = writeln!(out, "# metrics could not be rendered: {e}");
    }
    out
}

// === impl Metrics ===

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("portcullis");
        let m = Metrics {
            registry: Registry::default(),
            decisions: Family::default(),
            check_duration: Histogram::new(FAST_BUCKETS),
            logins: Family::default(),
            refreshes: Family::default(),
            backchannel_logouts: Family::default(),
            session_lookups: Default::default(),
            store_errors: Counter::default(),
            store_duration: Histogram::new(FAST_BUCKETS),
            jwks_fetches: Family::default(),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(|| Histogram::new(UPSTREAM_BUCKETS)),
            open_connections: Gauge::default(),
            open_tunnels: Gauge::default(),
            config_reloads: Family::default(),
            basic_auth: Family::default(),
            basic_auth_hash_checks: Counter::default(),
        };
        r.register(
            "decisions",
            "Forward-auth checks and proxied requests by outcome and rule (default: no rule matched; none: not judged)",
            m.decisions.clone(),
        );
        r.register(
            "check_duration_seconds",
            "Time to answer a forward-auth check",
            m.check_duration.clone(),
        );
        r.register(
            "logins",
            "Completed login callbacks by result and failure reason",
            m.logins.clone(),
        );
        r.register(
            "refreshes",
            "Background session refreshes by result",
            m.refreshes.clone(),
        );
        r.register(
            "backchannel_logouts",
            "Back-channel logout requests from the identity provider by result",
            m.backchannel_logouts.clone(),
        );
        let lookups = Family::<Labels, HotCounter>::default();
        r.register(
            "session_lookups",
            "Session cookie lookups by where the session was found (miss: nowhere)",
            lookups.clone(),
        );
        r.register(
            "store_errors",
            "Session store operations that failed",
            m.store_errors.clone(),
        );
        r.register(
            "store_duration_seconds",
            "Time to load a session from the session store",
            m.store_duration.clone(),
        );
        r.register(
            "jwks_fetches",
            "Signing key (JWKS) downloads by issuer and result",
            m.jwks_fetches.clone(),
        );
        r.register(
            "upstream_requests",
            "Proxied requests by rule and the upstream's status class (error: no answer)",
            m.upstream_requests.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time until the upstream's response head, by rule",
            m.upstream_duration.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open now",
            m.open_connections.clone(),
        );
        r.register(
            "open_tunnels",
            "Upgraded (WebSocket) connections to upstreams open now",
            m.open_tunnels.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP) by result",
            m.config_reloads.clone(),
        );
        r.register(
            "basic_auth",
            "Basic credentials on basic_auth rules by result (cached, verified, wrong_password, unknown_user, rate_limited, malformed)",
            m.basic_auth.clone(),
        );
        r.register(
            "basic_auth_hash_checks",
            "Password hashes checked for Basic credentials (cache misses)",
            m.basic_auth_hash_checks.clone(),
        );
        r.register(
            "build",
            "The version and git revision of the running binary",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("revision", REVISION.to_owned()),
            ]),
        );
        let session_lookups = ["local_cache", "store", "miss"].map(|s| {
            lookups
                .get_or_create(&vec![("source", s.to_owned())])
                .clone()
        });
        Metrics {
            registry: r,
            session_lookups,
            ..m
        }
    }

    /// Counts a session cookie lookup.
    pub fn session_lookup(&self, found: Lookup) {
        self.session_lookups[found as usize].inc();
    }

    /// Counts a completed login callback: `Ok` or the failure's reason.
    pub fn login(&self, result: Result<(), LoginFailure>) {
        let (result, reason) = match result {
            Ok(()) => ("success", "none"),
            Err(f) => ("failure", f.label()),
        };
        self.logins
            .get_or_create(&vec![
                ("result", result.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Counts a background refresh: `success`, `ended` (the IdP refused it
    /// and the session was ended) or `failure`.
    pub fn refresh(&self, result: &'static str) {
        result_counter(&self.refreshes, result);
    }

    /// Counts a back-channel logout: `success` or `failure`.
    pub fn backchannel_logout(&self, ok: bool) {
        result_counter(&self.backchannel_logouts, success(ok));
    }

    /// Counts a configuration reload: `success` or `failure`.
    pub fn config_reload(&self, ok: bool) {
        result_counter(&self.config_reloads, success(ok));
    }

    /// Counts Basic credentials by result (see `basic::BasicError::label`).
    pub fn basic_auth(&self, result: &'static str) {
        result_counter(&self.basic_auth, result);
    }

    /// Counts a signing key download for the issuer (or configured key URL) `issuer`.
    pub fn jwks_fetch(&self, issuer: &str, ok: bool) {
        self.jwks_fetches
            .get_or_create(&vec![
                ("issuer", issuer.to_owned()),
                ("result", success(ok).to_owned()),
            ])
            .inc();
    }
}

fn success(ok: bool) -> &'static str {
    if ok {
        "success"
    } else {
        "failure"
    }
}

fn result_counter(family: &Family<Labels, Counter>, result: &'static str) {
    family
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
}

// === impl LoginFailure ===

impl LoginFailure {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            LoginFailure::IdpError => "idp_error",
            LoginFailure::State => "state",
            LoginFailure::InvalidGrant => "invalid_grant",
            LoginFailure::IdTokenRejected => "id_token_rejected",
            LoginFailure::IdpUnreachable => "idp_unreachable",
            LoginFailure::Other => "other",
        }
    }
}

// === impl Outcome ===

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Allow,
        Outcome::Deny,
        Outcome::Unauthenticated,
        Outcome::InvalidToken,
        Outcome::BadRequest,
        Outcome::Error,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::InvalidToken => "invalid_token",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
        }
    }
}

// === impl RuleMetrics ===

impl RuleMetrics {
    /// Looks up (creating at zero) the counters of every rule, by name.
    pub fn compile<'a>(names: impl Iterator<Item = &'a str>) -> RuleMetrics {
        let family = &global().decisions;
        let set = |rule: &str| {
            Outcome::ALL.map(|o| {
                family
                    .get_or_create(&vec![
                        ("outcome", o.label().to_owned()),
                        ("rule", rule.to_owned()),
                    ])
                    .clone()
            })
        };
        RuleMetrics {
            rules: names.map(set).collect(),
            default: set("default"),
            none: set("none"),
        }
    }

    /// Counts a decision on the rule at position `rule` (`None`: the default policy).
    #[inline]
    pub fn count(&self, rule: Option<usize>, outcome: Outcome) {
        let set = match rule {
            Some(i) => self.rules.get(i).unwrap_or(&self.none),
            None => &self.default,
        };
        set[outcome as usize].inc();
    }

    /// Counts a request answered before any rule was looked at.
    #[inline]
    pub fn count_unjudged(&self, outcome: Outcome) {
        self.none[outcome as usize].inc();
    }
}

// === impl UpstreamMetrics ===

impl UpstreamMetrics {
    /// Looks up (creating at zero) the upstream metrics of rule `rule`.
    pub fn compile(rule: &str) -> UpstreamMetrics {
        let m = global();
        let status = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"].map(|class| {
            m.upstream_requests
                .get_or_create(&vec![
                    ("rule", rule.to_owned()),
                    ("status_class", class.to_owned()),
                ])
                .clone()
        });
        let duration = m
            .upstream_duration
            .get_or_create(&vec![("rule", rule.to_owned())])
            .clone();
        UpstreamMetrics { status, duration }
    }

    /// Counts an upstream answer (`None`: none came) and its latency.
    #[inline]
    pub fn observe(&self, status: Option<http::StatusCode>, took: Duration) {
        let class = match status {
            Some(s) => usize::from((s.as_u16() / 100).clamp(1, 5)) - 1,
            None => 5,
        };
        self.status[class].inc();
        self.duration.observe(took);
    }
}

// === impl HotCounter ===

impl Default for HotCounter {
    fn default() -> HotCounter {
        HotCounter(Arc::new(Sharded::new(1)))
    }
}

impl HotCounter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.add(0, 1);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.sum(0)
    }
}

impl TypedMetric for HotCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for HotCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

// === impl Histogram ===

impl Histogram {
    /// A histogram with these upper bounds (seconds, ascending) and `+Inf`.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram(Arc::new(HistogramInner {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
            counts: Sharded::new(bounds.len() + 2),
        }))
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let h = &*self.0;
        let n = h.bounds_ns.len();
        let i = h.bounds_ns.iter().position(|b| ns <= *b).unwrap_or(n);
        h.counts.add(i, 1);
        h.counts.add(n + 1, ns);
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &*self.0;
        let n = h.bounds.len();
        let mut buckets = Vec::with_capacity(n + 1);
        let mut count = 0;
        for i in 0..=n {
            let c = h.counts.sum(i);
            count += c;
            buckets.push((h.bounds.get(i).copied().unwrap_or(f64::INFINITY), c));
        }
        let sum = h.counts.sum(n + 1) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let mut r = Registry::default();
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        r.register("t_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(out.contains("# TYPE t_seconds histogram"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("t_seconds_count 3\n"), "{out}");
        assert!(out.contains("t_seconds_sum 2.0055\n"), "{out}");
    }

    #[test]
    fn decisions_are_counted_per_outcome_and_rule() {
        let set = RuleMetrics::compile(["unit-a", "unit-b"].into_iter());
        set.count(Some(1), Outcome::Deny);
        set.count(Some(1), Outcome::Deny);
        set.count(Some(0), Outcome::Allow);
        // A recompiled set (SIGHUP) keeps counting on the same series.
        let again = RuleMetrics::compile(["unit-b"].into_iter());
        again.count(Some(0), Outcome::Deny);
        let out = render();
        assert!(
            out.contains("portcullis_decisions_total{outcome=\"deny\",rule=\"unit-b\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_decisions_total{outcome=\"allow\",rule=\"unit-a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("portcullis_decisions_total{outcome=\"error\",rule=\"unit-a\"} 0\n"),
            "{out}"
        );
        assert!(out.contains("portcullis_build_info{version=\""), "{out}");
        assert!(
            out.contains("# TYPE portcullis_check_duration_seconds histogram"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn upstream_status_classes() {
        let u = UpstreamMetrics::compile("unit-upstream");
        u.observe(Some(http::StatusCode::NOT_FOUND), Duration::from_millis(3));
        u.observe(None, Duration::from_millis(3));
        let out = render();
        let line = |c: &str, n: u64| {
            format!("portcullis_upstream_requests_total{{rule=\"unit-upstream\",status_class=\"{c}\"}} {n}\n")
        };
        assert!(out.contains(&line("4xx", 1)), "{out}");
        assert!(out.contains(&line("error", 1)), "{out}");
        assert!(out.contains(&line("2xx", 0)), "{out}");
    }
}
