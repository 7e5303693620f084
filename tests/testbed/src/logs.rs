//! Reading the tails of log files, for error messages and failure dumps.

use std::path::Path;

/// Number of lines printed per log file by [`Testbed::dump_logs`](crate::Testbed::dump_logs).
pub const DUMP_LINES: usize = 200;

/// The last `lines` lines of the file at `path`, decoded lossily as UTF-8.
/// Returns an empty string when the file cannot be read.
pub fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail_text(&String::from_utf8_lossy(&bytes), lines),
        Err(_) => String::new(),
    }
}

/// The last `lines` lines of `text`, joined with `\n` (no trailing newline).
pub fn tail_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Prints the last [`DUMP_LINES`] lines of every `*.log` file in `dir` to
/// stderr, sorted by file name, each headed by `==> <path> <==`. Unreadable
/// directories print a single note instead.
pub fn dump_dir(dir: &Path) {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect(),
        Err(e) => {
            eprintln!("csi-testbed: cannot list logs in {}: {e}", dir.display());
            return;
        }
    };
    files.sort();
    for f in files {
        eprintln!(
            "\n==> {} (last {DUMP_LINES} lines) <==\n{}",
            f.display(),
            tail_file(&f, DUMP_LINES)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail_text("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_text("a\nb", 5), "a\nb");
        assert_eq!(tail_text("", 3), "");
        assert_eq!(tail_file(Path::new("/nonexistent/x.log"), 3), "");
    }
}
