//! client_golang's `process_*` metrics, read from `/proc` at each scrape:
//! upstream sidecars serve them from the same endpoint, and dashboards and
//! comparison runs read RSS and CPU from them.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Linux reports `/proc` times in USER_HZ, which is 100 on every
/// architecture Kubernetes runs on.
const USER_HZ: f64 = 100.0;

/// One reading of the process's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: i64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: i64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on open file descriptors (-1 when unlimited/unknown).
    pub max_fds: i64,
}

/// Parses `/proc/self/stat` (fields after the `)` closing the command name)
/// plus `/proc/self/status` (VmRSS) and `/proc/stat` (btime).
///
/// Returns `None` for text that does not have the expected shape.
pub fn parse_stats(stat: &str, status: &str, system_stat: &str) -> Option<ProcessStats> {
    // The command name may contain spaces and ')' itself: split at the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is the state (stat field 3), so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (field(14)? + field(15)?) / USER_HZ;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)? as i64;
    let boot_time: f64 = system_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())?;
    let resident_kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: resident_kib * 1024,
        virtual_bytes,
        start_time_seconds: boot_time + start_ticks / USER_HZ,
        open_fds: 0,
        max_fds: -1,
    })
}

/// The soft "Max open files" limit from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    Some(soft.parse().unwrap_or(-1))
}

/// Reads the current figures of this process, `None` off Linux or when
/// `/proc` is unreadable.
pub fn read_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let mut s = parse_stats(&stat, &status, &system)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(0);
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l))
        .unwrap_or(-1);
    Some(s)
}

/// The collector; register it with [`register`].
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = read_stats() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let start = ConstGauge::new(s.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Registers the `process_*` metrics in `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (csi provisioner)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
    const STATUS: &str =
        "Name:\tcsi-provisioner\nVmPeak:\t  120000 kB\nVmRSS:\t   10240 kB\nThreads:\t8\n";
    const SYSTEM: &str = "cpu  1 2 3\nbtime 1795400000\nprocesses 100\n";

    #[test]
    fn parses_proc_text() {
        let s = parse_stats(STAT, STATUS, SYSTEM).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 10240 * 1024);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.start_time_seconds, 1_795_400_000.0 + 123.45);
    }

    #[test]
    fn rejects_text_of_another_shape() {
        assert!(parse_stats("garbage", STATUS, SYSTEM).is_none());
        assert!(parse_stats(STAT, "Name: x\n", SYSTEM).is_none());
        assert!(parse_stats(STAT, STATUS, "cpu 1\n").is_none());
    }

    #[test]
    fn max_fds() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            Some(-1)
        );
    }

    #[test]
    fn this_process_reports_itself() {
        let s = read_stats().unwrap();
        assert!(s.resident_bytes > 0 && s.open_fds > 0);
        let mut reg = Registry::default();
        register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
