//! Tearing a local node down: workload pods, then driver pods, then the
//! kubelet and containerd (with every container they left), then every
//! host change, compared against the state recorded before the node.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use crate::host_state::HostState;
use crate::node::{DRIVER_POD_LABEL, LocalNode};
use crate::node_config::NODE_NAME;
use crate::process::ProcessHandle;

/// How long teardown waits for the kubelet to remove a group of pods
/// before it force-deletes them.
const POD_DELETE_TIMEOUT: Duration = Duration::from_secs(90);

/// What teardown found: the host before the node, after the node stopped
/// (before the undo) and at the end, plus whatever could not be undone.
#[derive(Debug, Clone)]
pub struct TeardownReport {
    /// Recorded before the node started (`None` in external mode).
    pub before: Option<HostState>,
    /// After the kubelet and containerd stopped, before the undo.
    pub stopped: Option<HostState>,
    /// At the end.
    pub after: Option<HostState>,
    /// Steps that failed (pod deletion, undo steps, captures).
    pub failures: Vec<String>,
    /// Wall time of the teardown.
    pub took: Duration,
}

impl TeardownReport {
    pub(crate) fn external() -> Self {
        TeardownReport {
            before: None,
            stopped: None,
            after: None,
            failures: Vec::new(),
            took: Duration::ZERO,
        }
    }

    /// Lines in which the final state differs from the state before.
    pub fn diff(&self) -> Vec<String> {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => b.diff(a),
            _ => Vec::new(),
        }
    }

    /// True when nothing failed and the host equals its state before.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
            && self.diff().is_empty()
            && (self.before.is_none() || self.after.is_some())
    }
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(before) = &self.before else {
            return writeln!(f, "csi-testbed: external node: nothing to undo");
        };
        writeln!(
            f,
            "csi-testbed: node teardown took {:.1}s",
            self.took.as_secs_f64()
        )?;
        writeln!(f, "host state before the node:\n{before}")?;
        if let (Some(stopped), Some(_)) = (&self.stopped, &self.after) {
            writeln!(f, "changed by the node (undone):")?;
            for l in before.diff(stopped) {
                writeln!(f, "  {l}")?;
            }
        }
        match &self.after {
            Some(a) => writeln!(f, "host state after teardown:\n{a}")?,
            None => writeln!(f, "host state after teardown: not captured")?,
        }
        let diff = self.diff();
        if diff.is_empty() {
            writeln!(f, "host state after teardown equals the state before")?;
        } else {
            writeln!(f, "DIFFERS from the state before:")?;
            for l in diff {
                writeln!(f, "  {l}")?;
            }
        }
        for l in &self.failures {
            writeln!(f, "teardown step failed: {l}")?;
        }
        Ok(())
    }
}

/// Runs the whole teardown on the calling thread (a thread of its own: it
/// builds a runtime and a fresh client from the admin kubeconfig).
pub(crate) fn run(mut local: LocalNode) -> TeardownReport {
    let t0 = Instant::now();
    let mut failures = Vec::new();

    if local.kubelet.is_some() {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                if let Err(e) = rt.block_on(delete_pods(&local.admin_kubeconfig)) {
                    failures.push(format!("deleting the node's pods: {e}"));
                }
            }
            Err(e) => failures.push(format!("runtime for pod deletion: {e}")),
        }
    }

    stop(local.kubelet.take(), Duration::from_secs(10));
    if let Some(containerd) = local.containerd.take() {
        remove_containers(&local, &mut failures);
        stop(Some(containerd), Duration::from_secs(10));
    }
    kill_leftovers(&local.paths.containerd_socket, &mut failures);

    let roots = local.paths.mount_roots();
    let stopped = match HostState::capture(&roots) {
        Ok(s) => Some(s),
        Err(e) => {
            failures.push(format!("capture after stop: {e}"));
            None
        }
    };
    if let Some(s) = &stopped {
        failures.extend(s.restore_to(&local.before));
    }
    let after = match HostState::capture(&roots) {
        Ok(s) => Some(s),
        Err(e) => {
            failures.push(format!("capture after teardown: {e}"));
            None
        }
    };
    TeardownReport {
        before: Some(local.before.clone()),
        stopped,
        after,
        failures,
        took: t0.elapsed(),
    }
}

fn stop(p: Option<ProcessHandle>, grace: Duration) {
    if let Some(p) = p {
        p.stop(grace);
    }
}

/// Deletes the node's workload pods, waits for the kubelet to finish them
/// (unpublishing their volumes through the still-running driver), then
/// does the same for the driver pods. Pods still there after
/// [`POD_DELETE_TIMEOUT`] are force-deleted and reported.
async fn delete_pods(admin_kubeconfig: &Path) -> Result<(), String> {
    let client = crate::kubeconfig::client_from_file(admin_kubeconfig)
        .await
        .map_err(|e| e.to_string())?;
    let all: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let (label, value) = DRIVER_POD_LABEL;
    let mut problems = Vec::new();
    for drivers in [false, true] {
        let pods: Vec<(String, String)> = all
            .list(&on_node)
            .await
            .map_err(|e| format!("list pods on {NODE_NAME}: {e}"))?
            .items
            .into_iter()
            .filter(|p| {
                let is_driver = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(label))
                    .is_some_and(|v| v == value);
                is_driver == drivers
            })
            .filter_map(|p| Some((p.metadata.namespace?, p.metadata.name?)))
            .collect();
        for (ns, name) in &pods {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
        let deadline = Instant::now() + POD_DELETE_TIMEOUT;
        for (ns, name) in &pods {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            loop {
                match api.get_opt(name).await {
                    Ok(None) => break,
                    Ok(Some(_)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    _ => {
                        problems.push(format!(
                            "pod {ns}/{name} not removed by the kubelet in {POD_DELETE_TIMEOUT:?}; force-deleted"
                        ));
                        let _ = api
                            .delete(name, &DeleteParams::default().grace_period(0))
                            .await;
                        break;
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Kills and deletes every task and container containerd still has in the
/// CRI namespace (sandboxes the kubelet had no time to remove), so no shim
/// or container outlives the node.
fn remove_containers(local: &LocalNode, failures: &mut Vec<String>) {
    let ctr = local.bin_dir.join("ctr");
    let sock = local.paths.containerd_socket.display().to_string();
    let ctr_out = |args: &[&str]| -> Option<String> {
        let mut all = vec!["--address", sock.as_str(), "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        std::process::Command::new(&ctr)
            .args(&all)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let tasks = ctr_out(&["tasks", "ls", "-q"]).unwrap_or_default();
    for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let _ = ctr_out(&["tasks", "kill", "--signal", "SIGKILL", id]);
        std::thread::sleep(Duration::from_millis(100));
        if ctr_out(&["tasks", "delete", "--force", id]).is_none() {
            failures.push(format!("ctr tasks delete {id}"));
        }
    }
    let containers = ctr_out(&["containers", "ls", "-q"]).unwrap_or_default();
    for id in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let _ = ctr_out(&["containers", "rm", id]);
    }
}

/// Shims of this node's containerd (found by the socket address on their
/// command line) and processes left in kubepods cgroups get SIGKILL: they
/// were started for this node and nothing else would stop them.
fn kill_leftovers(socket: &Path, failures: &mut Vec<String>) {
    let sock = socket.display().to_string();
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let words: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            if words
                .first()
                .is_some_and(|w| w.ends_with("containerd-shim-runc-v2"))
                && words.iter().any(|w| w == &sock)
            {
                pids.push(pid);
            }
        }
    }
    for cg in ["pids", "memory", "cpu", "freezer", "systemd", "unified"] {
        collect_procs(
            &Path::new("/sys/fs/cgroup").join(cg).join("kubepods"),
            &mut pids,
        );
    }
    pids.sort_unstable();
    pids.dedup();
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if !pids.is_empty() {
        failures.push(format!(
            "processes left by the node were killed: {pids:?} (the kubelet did not remove every container)"
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&e.path(), pids);
            }
        }
    }
}
