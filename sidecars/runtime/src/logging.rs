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
//! `--logging-format=text` (the default) writes klog's text format, as klog's
//! structured calls (`InfoS`, `ErrorS`, logr) do:
//!
//! ```text
//! I1204 12:00:00.000000       1 claims.rs:42] "Provisioned volume" err="boom" pvc="ns/claim" count=3
//! ```
//!
//! That is the severity (`I` for info, debug and trace, as klog's `V(n)` lines
//! are info lines; `W` warn; `E` error), `MMDD hh:mm:ss.uuuuuu` in local time
//! (the system time zone as `jiff` finds it, UTC where none is configured),
//! the process id right-aligned in 7 columns, the source file's base name and
//! line, then `] `, the message quoted, and the fields as `key=value`: `err`
//! first (from a field named `error` or `err`), then the fields of enclosing
//! spans, outermost first, then the event's. Strings (and `?`/`%` values) are
//! quoted with Go `%q`-style escapes, numbers and booleans are bare. A key given
//! twice keeps its last value, at the position of the last occurrence, unless
//! both values are equal (then the first stays), as klog de-duplicates. Unlike
//! klog, a string value containing line breaks stays on one line (escaped as
//! `\n`) rather than klog's indented `key=<` block.
//!
//! `--logging-format=json` writes klog/component-base compatible objects, one per
//! line: `ts` (Unix seconds as a float), `caller` (`dir/file.rs:line`), `msg`,
//! `v` (0 for info and warn, 4 for debug, 5 for trace; absent on error lines, as
//! klog omits it for errors), `err` (from a field named `error` or `err`), then
//! the fields of enclosing spans and of the event as further keys.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
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
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(text_layer(writer))
            .try_init(),
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

/// A fmt layer producing klog text lines into `writer`. Exposed so that tests
/// and tools can capture the exact production format.
pub fn text_layer<S, W>(writer: W) -> fmt::Layer<S, OrderedJsonFields, KlogText, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + 'static,
{
    fmt::layer()
        .fmt_fields(OrderedJsonFields)
        .event_format(KlogText)
        .with_writer(writer)
}

/// Records span fields as one JSON object in the order they were declared, so
/// that [`KlogText`] can merge them with the event's fields key by key.
/// (tracing's [`JsonFields`] sorts them by name.) A value recorded later
/// replaces the earlier one in place.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderedJsonFields;

impl<'w> FormatFields<'w> for OrderedJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut map = FieldMap::default();
        fields.record(&mut map);
        write!(writer, "{}", Value::Object(map.0))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> std::fmt::Result {
        let mut map = match serde_json::from_str(&current.fields) {
            Ok(Value::Object(map)) => FieldMap(map),
            _ => FieldMap::default(),
        };
        fields.record(&mut map);
        current.fields = Value::Object(map.0).to_string();
        Ok(())
    }
}

/// Field values by name, in the order recorded.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// Event formatter for klog's text format (see the module documentation).
///
/// Span fields are read from [`FormattedFields`] as JSON objects, so the layer
/// must record them with [`OrderedJsonFields`], as [`text_layer`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct KlogText;

impl<S, N> FormatEvent<S, N> for KlogText
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

        let mut kvs = KlogKvs::default();
        if let Some(err) = fields.err.take() {
            kvs.push("err", &Value::String(err));
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(f.as_str())
                {
                    for (k, v) in &map {
                        kvs.push(k, v);
                    }
                }
            }
        }
        for (k, v) in &fields.rest {
            kvs.push(k, v);
        }

        let (file, line) = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => (base_name(file), line),
            // klog's placeholder when the caller is unknown.
            _ => ("???", 1),
        };
        let mut out = String::with_capacity(128);
        write_klog_header(
            &mut out,
            *meta.level(),
            &jiff::Zoned::now().datetime(),
            std::process::id(),
            file,
            line,
        );
        write_go_quoted(&mut out, fields.message.as_deref().unwrap_or(""));
        for (k, v) in &kvs.0 {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out.push('\n');
        writer.write_str(&out)
    }
}

/// Writes klog's line header, `Lmmdd hh:mm:ss.uuuuuu ppppppp file:line] `.
fn write_klog_header(
    out: &mut String,
    level: Level,
    now: &jiff::civil::DateTime,
    pid: u32,
    file: &str,
    line: u32,
) {
    let severity = match level {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        _ => 'I',
    };
    let _ = write!(
        out,
        "{severity}{:02}{:02} {:02}:{:02}:{:02}.{:06} {pid:>7} {file}:{line}] ",
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.subsec_nanosecond() / 1000,
    );
}

/// Rendered `key=value` pairs in output order, de-duplicated as klog does.
#[derive(Default)]
struct KlogKvs(Vec<(String, String)>);

impl KlogKvs {
    fn push(&mut self, key: &str, value: &Value) {
        let rendered = klog_value(value);
        if let Some(i) = self.0.iter().position(|(k, _)| k == key) {
            if self.0[i].1 == rendered {
                return;
            }
            self.0.remove(i);
        }
        self.0.push((key.to_owned(), rendered));
    }
}

/// A field value as klog writes it after `key=`.
fn klog_value(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            write_go_quoted(&mut out, s);
            out
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => go_json_float(f),
            _ => n.to_string(),
        },
        // Booleans and null as such; nothing else comes out of the visitors.
        other => other.to_string(),
    }
}

/// A float as Go's `encoding/json` writes it (klog's rendering of numbers):
/// shortest round-trip digits, exponent form below 1e-6 and from 1e21 on.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

/// Appends `s` in double quotes with the escapes of Go's `strconv.Quote` (`%q`):
/// `\"`, `\\`, `\a \b \f \n \r \t \v`, `\xNN` for other ASCII controls, and
/// `\uNNNN` / `\UNNNNNNNN` for characters Go does not print.
fn write_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Approximates Go's `unicode.IsPrint` (letters, marks, numbers, punctuation,
/// symbols and the ASCII space) without a Unicode category table: controls,
/// spaces other than ' ', the common format characters and private use are
/// not printable. Unassigned code points are printed as they are.
fn go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{e000}'..='\u{f8ff}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{f0000}'..='\u{10ffff}'
        ))
}

/// The file name without its directories, as klog's text header shows it.
fn base_name(file: &str) -> &str {
    file.rsplit(['/', '\\']).next().unwrap_or(file)
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

    fn capture_text(f: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(text_layer(buf.clone()));
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines().map(str::to_owned).collect()
    }

    /// The header up to the message, for an event of this file at `line`.
    fn header_re(severity: char, line: u32) -> regex::Regex {
        let pid = format!("{:>7}", std::process::id());
        regex::Regex::new(&format!(
            r"^{severity}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{{6}} {pid} logging\.rs:{line}\] "
        ))
        .unwrap()
    }

    #[test]
    fn text_header_matches_klog() {
        let mut first = 0;
        let lines = capture_text(|| {
            first = line!() + 1;
            tracing::info!("info");
            tracing::debug!("debug");
            tracing::trace!("trace");
            tracing::warn!("warn");
            tracing::error!("error");
        });
        assert_eq!(lines.len(), 5);
        for (i, (severity, msg)) in [
            ('I', "info"),
            ('I', "debug"),
            ('I', "trace"),
            ('W', "warn"),
            ('E', "error"),
        ]
        .into_iter()
        .enumerate()
        {
            let re = header_re(severity, first + i as u32);
            let line = &lines[i];
            let m = re.find(line).unwrap_or_else(|| panic!("{re} !~ {line:?}"));
            assert_eq!(&line[m.end()..], format!("\"{msg}\""));
        }
    }

    #[test]
    fn text_header_layout_is_exact() {
        let mut out = String::new();
        let at = jiff::civil::date(2024, 12, 4).at(12, 0, 0, 0);
        write_klog_header(&mut out, Level::DEBUG, &at, 1, "file.rs", 42);
        assert_eq!(out, "I1204 12:00:00.000000       1 file.rs:42] ");

        // Microseconds are truncated, not rounded; a 7-digit pid fills the column.
        out.clear();
        let at = jiff::civil::date(2025, 1, 2).at(3, 4, 5, 123_456_999);
        write_klog_header(&mut out, Level::ERROR, &at, 4_194_304, "x.rs", 7);
        assert_eq!(out, "E0102 03:04:05.123456 4194304 x.rs:7] ");

        out.clear();
        write_klog_header(&mut out, Level::WARN, &at, 12345, "y.rs", 1000);
        assert_eq!(out, "W0102 03:04:05.123456   12345 y.rs:1000] ");
    }

    /// The stamp lies between two readings of jiff's local clock. (On a UTC
    /// machine this cannot tell local time from UTC.)
    #[test]
    fn text_time_is_the_current_local_time() {
        let stamp = |dt: jiff::civil::DateTime| {
            let mut out = String::new();
            write_klog_header(&mut out, Level::INFO, &dt, 1, "f", 1);
            out[1..21].to_owned()
        };
        let before = stamp(jiff::Zoned::now().datetime());
        let lines = capture_text(|| tracing::info!("now"));
        let after = stamp(jiff::Zoned::now().datetime());
        let logged = &lines[0][1..21];
        assert!(
            before.as_str() <= logged && logged <= after.as_str(),
            "{before} <= {logged} <= {after}"
        );
    }

    #[test]
    fn text_fields_render_as_klog_key_values() {
        let lines = capture_text(|| {
            let e = std::io::Error::other("disk \"full\"");
            tracing::error!(
                error = &e as &dyn std::error::Error,
                pv = "pvc-123",
                escaped = "a \"q\" \\ \t\n\r\u{1}\u{7f} é \u{200b}\u{a0}\u{10ffff}",
                count = 3u64,
                delta = -2i64,
                ratio = 1.5f64,
                whole = 2.0f64,
                big = 1e21f64,
                tiny = 1.5e-7f64,
                ok = true,
                list = ?vec![1, 2],
                shown = %"x y",
                "Failed to \"provision\"\n volume"
            );
            tracing::warn!(err = "soft", "Warned");
            tracing::info!("");
        });
        let body = |line: &str| line.split_once("] ").unwrap().1.to_owned();
        assert_eq!(
            body(&lines[0]),
            r#""Failed to \"provision\"\n volume" err="disk \"full\"" pv="pvc-123" escaped="a \"q\" \\ \t\n\r\x01\x7f é \u200b\u00a0\U0010ffff" count=3 delta=-2 ratio=1.5 whole=2 big=1e+21 tiny=1.5e-7 ok=true list="[1, 2]" shown="x y""#
        );
        assert_eq!(body(&lines[1]), r#""Warned" err="soft""#);
        assert_eq!(body(&lines[2]), r#""""#);
    }

    #[test]
    fn text_span_fields_merge_as_klog() {
        let lines = capture_text(|| {
            let outer = tracing::info_span!("sync", pvc = "ns/old", node = "n1");
            let _o = outer.enter();
            let inner = tracing::info_span!("provision", pvc = "ns/claim", attempt = 1u64);
            let _i = inner.enter();
            inner.record("attempt", 2u64);
            tracing::info!(node = "n1", attempt = 2u64, count = 3u64, "Provisioned");
            tracing::info!(node = "n2", "Moved");
        });
        let body = |line: &str| line.split_once("] ").unwrap().1.to_owned();
        // An inner span's different value replaces the outer one at the later
        // position; the event repeating an equal value leaves it where it was.
        assert_eq!(
            body(&lines[0]),
            r#""Provisioned" node="n1" pvc="ns/claim" attempt=2 count=3"#
        );
        assert_eq!(
            body(&lines[1]),
            r#""Moved" pvc="ns/claim" attempt=2 node="n2""#
        );
    }

    #[test]
    fn go_quoting_and_floats() {
        let q = |s: &str| {
            let mut out = String::new();
            write_go_quoted(&mut out, s);
            out
        };
        assert_eq!(q("plain"), r#""plain""#);
        assert_eq!(q("\u{7}\u{8}\u{c}\u{b}\u{1b}"), r#""\a\b\f\v\x1b""#);
        assert_eq!(
            q("\u{85}\u{2028}\u{feff}日本"),
            r#""\u0085\u2028\ufeff日本""#
        );
        assert_eq!(go_json_float(0.0), "0");
        assert_eq!(go_json_float(-1e21), "-1e+21");
        assert_eq!(go_json_float(1e20), "100000000000000000000");
        assert_eq!(go_json_float(0.000001), "0.000001");
        assert_eq!(go_json_float(1e-7), "1e-7");
    }

    #[test]
    fn base_name_drops_directories() {
        assert_eq!(base_name("sidecars/runtime/src/logging.rs"), "logging.rs");
        assert_eq!(base_name("C:\\src\\x.rs"), "x.rs");
        assert_eq!(base_name("x.rs"), "x.rs");
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
