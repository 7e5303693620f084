//! Resource use of one process from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The resident set size in KiB (`VmRSS`), or `None` once the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds used so far (user + system), or `None` once the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    // After it come state (field 3), ... utime (field 14) and stime (field 15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// RSS samples taken every 200 ms by a background task until dropped, each
/// with its time since [`Sampler::start`].
pub struct Sampler {
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`; `t0` is the time the series is measured from.
    pub fn start(pid: u32, t0: Instant) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                if let Some(rss) = rss_kib(pid) {
                    let t = t0.elapsed().as_secs_f64();
                    out.lock().expect("sampler lock").push((t, rss));
                }
            }
        });
        Sampler { samples, task }
    }

    /// The largest RSS sampled so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        let s = self.samples.lock().expect("sampler lock");
        s.iter().map(|(_, k)| *k).max().unwrap_or(0)
    }

    /// `(seconds since start, MiB)` of every sample so far.
    pub fn series_mib(&self) -> Vec<(f64, f64)> {
        let s = self.samples.lock().expect("sampler lock");
        s.iter().map(|(t, k)| (*t, *k as f64 / 1024.0)).collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat = "1234 (csi provisioner) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
    }

    #[tokio::test]
    async fn sampler_keeps_a_time_series() {
        let s = Sampler::start(std::process::id(), Instant::now());
        tokio::time::sleep(Duration::from_millis(700)).await;
        let series = s.series_mib();
        assert!(series.len() >= 2, "{series:?}");
        assert!(series.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(series.iter().all(|(_, mib)| *mib > 0.0));
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).is_some());
    }
}
