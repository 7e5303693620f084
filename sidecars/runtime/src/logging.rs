//! Logging set up from the component-base flags ([`LoggingArgs`]).
//!
//! klog verbosity maps onto tracing levels so that manifests keep their `-v`:
//!
//! | `-v`  | this workspace | kube, hyper, h2, tonic, tower, rustls |
//! |-------|----------------|----------------------------------------|
//! | 0–2   | info           | warn                                   |
//! | 3–4   | debug          | warn                                   |
//! | 5     | trace          | warn                                   |
//! | 6–7   | trace          | kube debug (per-request spans), rest warn |
//! | ≥ 8   | trace          | trace                                  |
//!
//! A non-empty `RUST_LOG` replaces the table entirely. Output goes to stderr, as
//! with klog; with `--log-{text,json}-split-stream` only errors go to stderr
//! and everything else to stdout.
//!
//! `--logging-format=json` writes klog/component-base compatible objects, one per
//! line: `ts` (Unix seconds as a float), `caller` (`dir/file.rs:line`), `msg`,
//! `v` (0 for info and warn, 4 for debug, 5 for trace; absent on error lines, as
//! klog omits it for errors), `err` (from a field named `error` or `err`), then
//! the fields of enclosing spans and of the event as further keys.

use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Error;
use crate::flags::{LogFormat, LoggingArgs};

/// Targets of dependencies that are noisy below `warn`.
const LIBRARY_TARGETS: &[&str] = &[
    "kube",
    "kube_client",
    "kube_runtime",
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "tower",
    "tower_http",
    "rustls",
];

/// The `EnvFilter` directives used for klog verbosity `v` when `RUST_LOG` is unset.
pub fn filter_directives(v: u8) -> String {
    let own = match v {
        0..=2 => "info",
        3..=4 => "debug",
        _ => "trace",
    };
    if v >= 8 {
        return own.to_owned();
    }
    let mut out = own.to_owned();
    for target in LIBRARY_TARGETS {
        let level = if v >= 6 && target.starts_with("kube") {
            "debug"
        } else {
            "warn"
        };
        out.push_str(&format!(",{target}={level}"));
    }
    out
}

/// Installs the global tracing subscriber for `args`.
///
/// Fails with [`Error::LoggingInit`] when `RUST_LOG` is not a valid filter or a
/// global subscriber is already installed (e.g. `init` called twice).
pub fn init(args: &LoggingArgs) -> Result<(), Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| Error::LoggingInit(format!("RUST_LOG: {e}")))?
        }
        _ => EnvFilter::try_new(filter_directives(args.verbosity))
            .map_err(|e| Error::LoggingInit(e.to_string()))?,
    };
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let split = args.split_stream();
    let writer = if split {
        BoxMakeWriter::new(
            std::io::stderr
                .with_max_level(Level::ERROR)
                .or_else(std::io::stdout),
        )
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let result = match args.logging_format {
        LogFormat::Text => {
            let ansi = !split && std::io::stderr().is_terminal();
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt::layer().with_ansi(ansi).with_writer(writer))
                .try_init()
        }
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(json_layer(writer))
            .try_init(),
    };
    result.map_err(|e| Error::LoggingInit(e.to_string()))
}

/// A fmt layer producing klog JSON lines into `writer`. Exposed so that tests
/// and tools can capture the exact production format.
pub fn json_layer<S, W>(writer: W) -> fmt::Layer<S, JsonFields, KlogJson, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + 'static,
{
    fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(KlogJson)
        .with_writer(writer)
}

/// Event formatter for klog-compatible JSON (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct KlogJson;

impl<S, N> FormatEvent<S, N> for KlogJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);

        let mut out = Map::new();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        out.insert("ts".into(), ts.into());
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            out.insert(
                "caller".into(),
                format!("{}:{line}", short_caller(file)).into(),
            );
        }
        let msg = fields.message.take().unwrap_or_default();
        out.insert("msg".into(), msg.into());
        let level = *meta.level();
        if level != Level::ERROR {
            let v = match level {
                Level::DEBUG => 4,
                Level::TRACE => 5,
                _ => 0,
            };
            out.insert("v".into(), v.into());
        }
        if let Some(err) = fields.err.take() {
            out.insert("err".into(), err.into());
        }
        // Span fields, outermost first so that inner spans and the event win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(f.as_str())
                {
                    for (k, v) in map {
                        if !out.contains_key(&k) {
                            out.insert(k, v);
                        }
                    }
                }
            }
        }
        for (k, v) in fields.rest {
            out.insert(k, v);
        }
        writeln!(writer, "{}", Value::Object(out))
    }
}

/// Last directory plus file name, like zap's short caller used by klog JSON.
fn short_caller(file: &str) -> &str {
    let mut idx = file.len();
    for _ in 0..2 {
        match file[..idx].rfind(['/', '\\']) {
            Some(i) => idx = i,
            None => return file,
        }
    }
    &file[idx + 1..]
}

#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    err: Option<String>,
    rest: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            "error" | "err" => {
                self.err = Some(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            name => {
                self.rest.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<Map<String, Value>> {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(json_layer(buf.clone()));
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Value::Object(m) => m,
                other => panic!("not an object: {other}"),
            })
            .collect()
    }

    #[test]
    fn json_lines_use_klog_keys() {
        let lines = capture(|| {
            let span = tracing::info_span!("reconcile", pvc = "ns/claim");
            let _g = span.enter();
            tracing::info!(pv = "pvc-123", count = 3u64, "Provisioned volume");
            tracing::debug!("debug line");
            tracing::trace!("trace line");
            let e = std::io::Error::other("boom");
            tracing::error!(error = &e as &dyn std::error::Error, "Failed");
            tracing::warn!(err = "soft", "Warned");
        });
        assert_eq!(lines.len(), 5);
        let info = &lines[0];
        let keys: Vec<&str> = info.keys().map(String::as_str).collect();
        assert_eq!(keys[..4], ["ts", "caller", "msg", "v"]);
        assert!(info["ts"].as_f64().unwrap() > 1.0e9);
        assert!(
            info["caller"]
                .as_str()
                .unwrap()
                .starts_with("src/logging.rs:")
        );
        assert_eq!(info["msg"], "Provisioned volume");
        assert_eq!(info["v"], 0);
        assert_eq!(info["pv"], "pvc-123");
        assert_eq!(info["count"], 3);
        assert_eq!(info["pvc"], "ns/claim");
        assert_eq!(lines[1]["v"], 4);
        assert_eq!(lines[2]["v"], 5);
        let err = &lines[3];
        assert!(!err.contains_key("v"));
        assert_eq!(err["err"], "boom");
        assert!(!err.contains_key("error"));
        assert_eq!(lines[4]["err"], "soft");
        assert_eq!(lines[4]["v"], 0);
    }

    #[test]
    fn verbosity_table() {
        assert!(filter_directives(0).starts_with("info,kube=warn"));
        assert!(filter_directives(2).starts_with("info,"));
        assert!(filter_directives(3).starts_with("debug,"));
        assert!(filter_directives(4).starts_with("debug,"));
        assert!(filter_directives(5).starts_with("trace,kube=warn"));
        let six = filter_directives(6);
        assert!(six.contains("kube=debug") && six.contains("kube_client=debug"));
        assert!(six.contains("hyper=warn"));
        assert_eq!(filter_directives(8), "trace");
        for v in 0..=10 {
            EnvFilter::try_new(filter_directives(v)).unwrap();
        }
    }

    #[test]
    fn short_caller_keeps_last_dir() {
        assert_eq!(
            short_caller("sidecars/runtime/src/leader.rs"),
            "src/leader.rs"
        );
        assert_eq!(short_caller("src/x.rs"), "src/x.rs");
        assert_eq!(short_caller("x.rs"), "x.rs");
    }
}
