//! The host-global state a kubelet node changes, recorded before the node
//! starts and restored at teardown: sysctls, iptables rules and chains, the
//! node address on `lo`, the CNI bridge, kubepods cgroups, mounts under the
//! node's directories and the host directories kubelet, containerd and CNI
//! create.

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Sysctls the kubelet (`vm.*`, `kernel.*`) and the CNI bridge plugin
/// (`net.ipv4.ip_forward`) may set.
pub const WATCHED_SYSCTLS: [&str; 8] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
];

/// Host directories the node's programs create when absent: containerd's
/// shim sockets, libcni's result cache, network namespaces, the kubelet's
/// legacy log links, iptables' lock file.
pub const WATCHED_PATHS: [&str; 7] = [
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/var/log/containers",
    "/var/log/pods",
    "/run/xtables.lock",
    "/usr/libexec/kubernetes",
];

/// Tables whose rules and chains are compared.
const IPTABLES_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

/// Built-in chains: their empty ACCEPT form is what a freshly loaded table
/// shows, so only rules and other chains matter.
const BUILTIN_CHAINS: [&str; 5] = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];

/// A snapshot of the host state a node touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// `name = value` for each of [`WATCHED_SYSCTLS`] that exists.
    pub sysctls: Vec<(String, String)>,
    /// `iptables`/`ip6tables` `<family> <table> <line>`: user chains
    /// (`:NAME`) and rules (`-A ...`), counters dropped; built-in chains
    /// with policy ACCEPT and empty tables are left out.
    pub iptables: BTreeSet<String>,
    /// Addresses on `lo` (`ip -o addr show dev lo`, address field only).
    pub lo_addresses: BTreeSet<String>,
    /// Names of network links other than `lo` that look like the node's
    /// (`cni0`, `veth*`).
    pub links: BTreeSet<String>,
    /// `kubepods` cgroup directories that exist.
    pub cgroups: BTreeSet<String>,
    /// Mount points under the watched roots, from `/proc/self/mountinfo`.
    pub mounts: Vec<String>,
    /// Which of [`WATCHED_PATHS`] exist.
    pub paths: BTreeSet<String>,
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("run {program} {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("run {program} {}", args.join(" ")),
            std::io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// `[12:34]` counters and the header/COMMIT lines removed, built-in ACCEPT
/// chains dropped; each kept line prefixed with `<family> <table>`.
fn normalize_iptables(family: &str, dump: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut table = String::new();
    for line in dump.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(chain) = line.strip_prefix(':') {
            let mut parts = chain.split_whitespace();
            let name = parts.next().unwrap_or_default();
            let policy = parts.next().unwrap_or_default();
            if BUILTIN_CHAINS.contains(&name) && policy == "ACCEPT" {
                continue;
            }
            out.insert(format!("{family} {table} :{name} {policy}"));
            continue;
        }
        out.insert(format!("{family} {table} {line}"));
    }
    out
}

/// Mount points at or under one of `roots`.
fn mounts_under(roots: &[PathBuf]) -> Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mountinfo)
        .filter(|m| roots.iter().any(|r| Path::new(m).starts_with(r)))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl HostState {
    /// Records the state now. `mount_roots` are the directories whose
    /// mounts count (the node's directories in the run directory).
    ///
    /// Errors: [`Error::Io`] if `iptables-save` or `ip` cannot run (the
    /// message names the program; `.ci/run` installs them).
    pub fn capture(mount_roots: &[PathBuf]) -> Result<HostState> {
        let sysctls = WATCHED_SYSCTLS
            .iter()
            .filter_map(|n| {
                std::fs::read_to_string(sysctl_path(n))
                    .ok()
                    .map(|v| (n.to_string(), v.trim().to_string()))
            })
            .collect();
        let mut iptables = BTreeSet::new();
        for (family, program) in [("ipv4", "iptables-save"), ("ipv6", "ip6tables-save")] {
            iptables.extend(normalize_iptables(family, &run(program, &[])?));
        }
        let lo_addresses = run("ip", &["-o", "addr", "show", "dev", "lo"])?
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                it.position(|w| w == "inet" || w == "inet6")
                    .and_then(|_| it.next())
                    .map(str::to_string)
            })
            .collect();
        let links = run("ip", &["-o", "link", "show"])?
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
            .filter(|n| n == "cni0" || n.starts_with("veth"))
            .collect();
        let cgroups = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path().join("kubepods"))
                    .chain([PathBuf::from("/sys/fs/cgroup/kubepods")])
                    .filter(|p| p.is_dir())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut roots: Vec<PathBuf> = mount_roots.to_vec();
        roots.extend(
            ["/run/containerd", "/run/netns", "/var/lib/kubelet"]
                .iter()
                .map(PathBuf::from),
        );
        let mounts = mounts_under(&roots)?;
        let paths = WATCHED_PATHS
            .iter()
            .filter(|p| Path::new(p).symlink_metadata().is_ok())
            .map(|p| p.to_string())
            .collect();
        Ok(HostState {
            sysctls,
            iptables,
            lo_addresses,
            links,
            cgroups,
            mounts,
            paths,
        })
    }

    /// Lines of `other` that differ from `self`, `-` for what `self` has and
    /// `other` lacks, `+` for the reverse. Empty when equal.
    pub fn diff(&self, other: &HostState) -> Vec<String> {
        let a = self.lines();
        let b = other.lines();
        let a_set: BTreeSet<_> = a.iter().collect();
        let b_set: BTreeSet<_> = b.iter().collect();
        let mut out: Vec<String> = a
            .iter()
            .filter(|l| !b_set.contains(l))
            .map(|l| format!("- {l}"))
            .collect();
        out.extend(
            b.iter()
                .filter(|l| !a_set.contains(l))
                .map(|l| format!("+ {l}")),
        );
        out
    }

    fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sysctls
            .iter()
            .map(|(k, v)| format!("sysctl {k} = {v}"))
            .collect();
        v.extend(self.iptables.iter().map(|l| format!("iptables {l}")));
        v.extend(self.lo_addresses.iter().map(|a| format!("lo address {a}")));
        v.extend(self.links.iter().map(|l| format!("link {l}")));
        v.extend(self.cgroups.iter().map(|c| format!("cgroup {c}")));
        v.extend(self.mounts.iter().map(|m| format!("mount {m}")));
        v.extend(self.paths.iter().map(|p| format!("path {p}")));
        v
    }

    /// Brings the host back to `before` as far as `self` (the state now)
    /// differs: unmounts (deepest first, detached), deletes added iptables
    /// rules and then added chains, removes the added `lo` addresses and
    /// links, removes kubepods cgroups (deepest first), writes the sysctls
    /// back, removes the watched paths that were absent (only when empty,
    /// or a lock file).
    ///
    /// Every step is tried; the returned list holds what could not be
    /// undone (empty on full success).
    pub fn restore_to(&self, before: &HostState) -> Vec<String> {
        let mut failed = Vec::new();
        let mut note = |what: String, r: std::result::Result<(), String>| {
            if let Err(e) = r {
                failed.push(format!("{what}: {e}"));
            }
        };

        let mut mounts: Vec<&String> = self
            .mounts
            .iter()
            .filter(|m| !before.mounts.contains(m))
            .collect();
        // Longer paths first, and the later mount on the same path first.
        mounts.reverse();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            note(format!("umount {m}"), umount_detach(m));
        }

        // Rules first, so the chains they jump to can be deleted after.
        for line in self.iptables.difference(&before.iptables) {
            let mut parts = line.splitn(3, ' ');
            let (family, table, rest) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            if !IPTABLES_TABLES.contains(&table) {
                continue;
            }
            let program = if family == "ipv6" {
                "ip6tables"
            } else {
                "iptables"
            };
            if let Some(rule) = rest.strip_prefix("-A ") {
                let mut args = vec!["-w".to_string(), "-t".into(), table.into(), "-D".into()];
                args.extend(split_shell_words(rule));
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                note(
                    format!("{program} -t {table} -D {rule}"),
                    run(program, &refs).map(drop).map_err(|e| e.to_string()),
                );
            }
        }
        for line in self.iptables.difference(&before.iptables) {
            let mut parts = line.splitn(3, ' ');
            let (family, table, rest) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let program = if family == "ipv6" {
                "ip6tables"
            } else {
                "iptables"
            };
            if let Some(chain) = rest.strip_prefix(':') {
                let name = chain.split_whitespace().next().unwrap_or_default();
                if BUILTIN_CHAINS.contains(&name) {
                    continue;
                }
                let r = run(program, &["-w", "-t", table, "-F", name])
                    .and_then(|_| run(program, &["-w", "-t", table, "-X", name]));
                note(
                    format!("{program} -t {table} -X {name}"),
                    r.map(drop).map_err(|e| e.to_string()),
                );
            }
        }

        for addr in self.lo_addresses.difference(&before.lo_addresses) {
            note(
                format!("ip addr del {addr} dev lo"),
                run("ip", &["addr", "del", addr, "dev", "lo"])
                    .map(drop)
                    .map_err(|e| e.to_string()),
            );
        }
        for link in self.links.difference(&before.links) {
            // veth ends vanish with their namespace; one may already be gone.
            if Path::new("/sys/class/net").join(link).exists() {
                note(
                    format!("ip link del {link}"),
                    run("ip", &["link", "del", link])
                        .map(drop)
                        .map_err(|e| e.to_string()),
                );
            }
        }

        for cg in self.cgroups.difference(&before.cgroups) {
            note(format!("rmdir -r {cg}"), rmdir_tree(Path::new(cg)));
        }

        for (name, value) in &before.sysctls {
            let now = self.sysctls.iter().find(|(n, _)| n == name);
            if now.map(|(_, v)| v) != Some(value) {
                note(
                    format!("sysctl {name}={value}"),
                    std::fs::write(sysctl_path(name), value).map_err(|e| e.to_string()),
                );
            }
        }

        for p in self.paths.difference(&before.paths) {
            let path = Path::new(p);
            let r = if path.is_dir() {
                remove_empty_tree(path)
            } else {
                std::fs::remove_file(path).map_err(|e| e.to_string())
            };
            note(format!("remove {p}"), r);
        }
        failed
    }
}

/// `umount -l`: detached, so a busy mount does not block teardown.
fn umount_detach(path: &str) -> std::result::Result<(), String> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes a cgroup directory and its child cgroups, deepest first (cgroup
/// directories go with rmdir, never with file removal).
fn rmdir_tree(dir: &Path) -> std::result::Result<(), String> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Removes `dir` when it holds nothing but empty directories and symlinks
/// (the kubelet's dangling log links); anything else is left and reported.
fn remove_empty_tree(dir: &Path) -> std::result::Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for e in rd.filter_map(|e| e.ok()) {
        let t = e.file_type().map_err(|e| e.to_string())?;
        if t.is_dir() {
            remove_empty_tree(&e.path())?;
        } else if t.is_symlink() || t.is_socket() {
            std::fs::remove_file(e.path()).map_err(|e| e.to_string())?;
        } else {
            return Err(format!("{} is not empty", dir.display()));
        }
    }
    std::fs::remove_dir(dir).map_err(|e| e.to_string())
}

/// Splits an `iptables-save` rule into words, honouring double quotes (as
/// in `--comment "a b"`) and backslash escapes inside them.
fn split_shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(cur);
    }
    words
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_dump_is_normalized() {
        let dump = "# Generated\n*filter\n:INPUT ACCEPT [3:4]\n:FORWARD DROP [0:0]\n\
                    :KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\nCOMMIT\n";
        let got: Vec<_> = normalize_iptables("ipv4", dump).into_iter().collect();
        assert_eq!(
            got,
            [
                "ipv4 filter -A INPUT -j KUBE-FIREWALL",
                "ipv4 filter :FORWARD DROP",
                "ipv4 filter :KUBE-FIREWALL -",
            ]
        );
    }

    #[test]
    fn words_keep_quoted_comments() {
        assert_eq!(
            split_shell_words(r#"INPUT -m comment --comment "kube \"x\" y" -j KUBE-X"#),
            [
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "kube \"x\" y",
                "-j",
                "KUBE-X"
            ]
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn diff_names_both_sides() {
        let a = HostState {
            sysctls: vec![("kernel.panic".into(), "1".into())],
            iptables: BTreeSet::new(),
            lo_addresses: BTreeSet::new(),
            links: BTreeSet::new(),
            cgroups: BTreeSet::new(),
            mounts: vec![],
            paths: BTreeSet::new(),
        };
        let mut b = a.clone();
        b.sysctls[0].1 = "10".into();
        assert_eq!(
            a.diff(&b),
            ["- sysctl kernel.panic = 1", "+ sysctl kernel.panic = 10"]
        );
        assert!(a.diff(&a).is_empty());
    }
}
