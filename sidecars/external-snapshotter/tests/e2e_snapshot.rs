//! csi-snapshotter end to end on the real control plane, with our
//! snapshot-controller (`CSI_E2E_SNAPSHOT_CONTROLLER_BIN=upstream`: upstream
//! v8.6.0's) and our csi-provisioner: a Bound claim is
//! snapshotted and restored, a pre-provisioned snapshot is bound and
//! deleted, and a driver that answers too late (CreateSnapshot deadline
//! exceeded, a non-final error) recovers. `CSI_E2E_SNAPSHOTTER_BIN=<upstream
//! csi-snapshotter>` runs the same test on upstream's binary;
//! `CSI_E2E_SNAPSHOTTER_REPORT=<dir>` writes each scenario's content record
//! and events for a diff.

mod common;

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{
    Scenario, WAIT, claim, content_record, poll, report, scenario, snapshot_of, testing_ours,
};
use csi_client::csi::v1::CreateSnapshotRequest;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, PostParams};
use kube::core::ObjectMeta;
use serde_json::json;
use snapshot_api::names as n;
use snapshot_api::snapshot::v1::{
    DeletionPolicy, VolumeSnapshot, VolumeSnapshotContent, VolumeSnapshotContentSource,
    VolumeSnapshotContentSpec, VolumeSnapshotSource, VolumeSnapshotSpec,
};
use testbed::{Testbed, TestbedOptions};

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_pre_provisioned_and_recovery() -> anyhow::Result<()> {
    Testbed::run(
        TestbedOptions::default(),
        async |tb: &Testbed| -> anyhow::Result<()> {
            let who = if testing_ours() { "ours" } else { "upstream" };
            let t0 = Instant::now();
            // A short CSI deadline, so the proxy's delay can make a driver error.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let endpoint = format!("--http-endpoint=127.0.0.1:{port}");
            let s = scenario(tb, "e2e-snap", &["--timeout=3s", &endpoint]).await?;
            println!("[{who}] setup {:?}", t0.elapsed());
            dynamic_and_restore(&s, who).await?;
            pre_provisioned(&s, who).await?;
            driver_error_then_recovery(&s, who).await?;
            ensure!(s.snapshotter.is_running(), "the snapshotter exited");
            // Metrics and the Lease, as upstream names them.
            let metrics = http_get(port, "/metrics").await?;
            for needle in [
                "csi_sidecar_operations_seconds_bucket",
                "/csi.v1.Controller/CreateSnapshot",
                "/csi.v1.Controller/DeleteSnapshot",
                "/csi.v1.Controller/ListSnapshots",
                "workqueue_adds_total{name=\"csi-snapshotter-content\"}",
                "leader_election_master_status",
            ] {
                ensure!(metrics.contains(needle), "metrics lack {needle}");
            }
            let health = http_get(port, "/healthz/leader-election").await?;
            ensure!(
                health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
                "{health}"
            );
            let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                kube::Api::namespaced(s.admin.clone(), &s.ns);
            ensure!(
                leases.get_opt(common::LEASE).await?.is_some(),
                "no Lease {}",
                common::LEASE
            );
            // Measured and printed, not asserted.
            let rss = std::fs::read_to_string(format!("/proc/{}/status", s.snapshotter.pid()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                })
                .unwrap_or_default();
            println!("[{who}] csi-snapshotter peak RSS: {rss} kB");
            println!("[{who}] whole test {:?}", t0.elapsed());
            Ok(())
        },
    )
    .await
}

/// Snapshot of a Bound claim, restore from it, delete all.
async fn dynamic_and_restore(s: &Scenario, who: &str) -> anyhow::Result<()> {
    let pp = PostParams::default();
    s.pvcs
        .create(&pp, &claim("src", &s.storage_class, None))
        .await?;
    s.wait_bound("src").await?;
    let volume = s.volume_handle("src").await?;

    let t = Instant::now();
    s.snapshots
        .create(&pp, &snapshot_of("snap1", "src", &s.snapshot_class))
        .await?;
    let snap = s.wait_ready("snap1").await?;
    let ready_in = t.elapsed();
    let content_name = s.content_of("snap1").await?;
    let content = s.contents.get(&content_name).await?;
    let status = content.status.clone().unwrap_or_default();
    let handle = status.snapshot_handle.clone().unwrap_or_default();
    ensure!(!handle.is_empty(), "no snapshotHandle: {status:?}");
    ensure!(status.ready_to_use == Some(true), "{status:?}");
    ensure!(status.creation_time.is_some_and(|t| t > 0), "{status:?}");
    let size = s.driver_snapshot_size(&handle).await?;
    ensure!(
        status.restore_size == (size > 0).then_some(size),
        "restoreSize {status:?}, driver {size}"
    );
    ensure!(status.error.is_none(), "{status:?}");
    ensure!(
        !content
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED),
        "being-created left on {content_name}"
    );
    ensure!(
        content
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|f| f == n::VOLUME_SNAPSHOT_CONTENT_FINALIZER),
        "no bound finalizer"
    );
    ensure!(
        snap.status
            .as_ref()
            .and_then(|s| s.creation_time.clone())
            .is_some(),
        "the VolumeSnapshot has no creationTime"
    );
    let on_driver = s.driver_snapshots(Some(&volume)).await?;
    ensure!(
        on_driver.contains(&handle),
        "driver lacks {handle}: {on_driver:?}"
    );
    let events = s.content_events(&content_name).await?;
    ensure!(events.is_empty(), "unexpected events: {events:?}");
    report(
        "dynamic",
        &json!({"content": content_record(&content), "events": events}),
    )?;

    // Restore with our csi-provisioner.
    let t = Instant::now();
    s.pvcs
        .create(&pp, &claim("restored", &s.storage_class, Some("snap1")))
        .await?;
    s.wait_bound("restored").await?;
    let restore_in = t.elapsed();

    // Delete all: the snapshot goes from the driver, then the content.
    let t = Instant::now();
    s.pvcs.delete("restored", &DeleteParams::default()).await?;
    s.snapshots
        .delete("snap1", &DeleteParams::default())
        .await?;
    s.wait_gone_content(&content_name).await?;
    let delete_in = t.elapsed();
    let left = s.driver_snapshots(Some(&volume)).await?;
    ensure!(left.is_empty(), "snapshots left on the driver: {left:?}");
    s.pvcs.delete("src", &DeleteParams::default()).await?;
    poll("claims gone", WAIT, || async {
        Ok(s.pvcs
            .list(&Default::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    println!(
        "[{who}] dynamic: ready in {ready_in:?}, restore Bound in {restore_in:?}, snapshot+content deleted in {delete_in:?}"
    );
    Ok(())
}

/// A snapshot cut on the driver beforehand, bound through a
/// pre-provisioned content; deleting the snapshot deletes it (policy Delete).
async fn pre_provisioned(s: &Scenario, who: &str) -> anyhow::Result<()> {
    let pp = PostParams::default();
    s.pvcs
        .create(&pp, &claim("pre-src", &s.storage_class, None))
        .await?;
    s.wait_bound("pre-src").await?;
    let volume = s.volume_handle("pre-src").await?;
    let cut = s
        .csi
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: volume.clone(),
            name: format!("pre-{}", s.suffix),
            ..Default::default()
        })
        .await?
        .snapshot
        .unwrap_or_default();
    let content_name = format!("pre-{}", s.suffix);
    let content = VolumeSnapshotContent {
        metadata: ObjectMeta {
            name: Some(content_name.clone()),
            ..Default::default()
        },
        spec: VolumeSnapshotContentSpec {
            volume_snapshot_ref: ObjectReference {
                name: Some("pre".into()),
                namespace: Some(s.ns.clone()),
                ..Default::default()
            },
            deletion_policy: DeletionPolicy::Delete,
            driver: common::DRIVER.into(),
            volume_snapshot_class_name: None,
            source: VolumeSnapshotContentSource {
                volume_handle: None,
                snapshot_handle: Some(cut.snapshot_id.clone()),
            },
            source_volume_mode: None,
        },
        status: None,
    };
    let t = Instant::now();
    s.contents.create(&pp, &content).await?;
    let snapshot = VolumeSnapshot::new(
        "pre",
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                volume_snapshot_content_name: Some(content_name.clone()),
                ..Default::default()
            },
            volume_snapshot_class_name: None,
        },
    );
    s.snapshots.create(&pp, &snapshot).await?;
    s.wait_ready("pre").await?;
    let ready_in = t.elapsed();
    let content = s.contents.get(&content_name).await?;
    let status = content.status.clone().unwrap_or_default();
    ensure!(
        status.snapshot_handle.as_deref() == Some(cut.snapshot_id.as_str()),
        "{status:?}"
    );
    let size = cut.size_bytes;
    ensure!(
        status.restore_size == (size > 0).then_some(size),
        "restoreSize {status:?}, driver {size}"
    );
    report(
        "pre-provisioned",
        &json!({"content": content_record(&content), "events": s.content_events(&content_name).await?}),
    )?;

    let t = Instant::now();
    s.snapshots.delete("pre", &DeleteParams::default()).await?;
    s.wait_gone_content(&content_name).await?;
    let delete_in = t.elapsed();
    let left = s.driver_snapshots(Some(&volume)).await?;
    ensure!(left.is_empty(), "pre-provisioned snapshot left: {left:?}");
    s.pvcs.delete("pre-src", &DeleteParams::default()).await?;
    println!("[{who}] pre-provisioned: ready in {ready_in:?}, deleted in {delete_in:?}");
    Ok(())
}

/// The driver's answers arrive after the sidecar's 3 s deadline:
/// CreateSnapshot fails with DeadlineExceeded (not final), the content
/// keeps its being-created record and gets the error; once the driver is
/// fast again the same snapshot (same name) is recorded and the error
/// cleared.
async fn driver_error_then_recovery(s: &Scenario, who: &str) -> anyhow::Result<()> {
    let pp = PostParams::default();
    s.pvcs
        .create(&pp, &claim("slow-src", &s.storage_class, None))
        .await?;
    s.wait_bound("slow-src").await?;
    let volume = s.volume_handle("slow-src").await?;
    s.proxy.set_delay(Duration::from_secs(5));
    s.snapshots
        .create(&pp, &snapshot_of("slow", "slow-src", &s.snapshot_class))
        .await?;
    let content_name = s.content_of("slow").await?;
    let failed = poll("error recorded on the content", WAIT, || async {
        let c = s.contents.get(&content_name).await?;
        let has_error = c.status.as_ref().and_then(|s| s.error.as_ref()).is_some();
        Ok(has_error.then_some(c))
    })
    .await?;
    let message = failed
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    ensure!(
        message.starts_with("Failed to create snapshot: failed to take snapshot of the volume"),
        "{message}"
    );
    ensure!(message.contains("DeadlineExceeded"), "{message}");
    ensure!(
        failed
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED),
        "a non-final error must keep the being-created record"
    );
    let failed_record = content_record(&failed);
    let events = s.content_events(&content_name).await?;
    ensure!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "SnapshotCreationFailed"),
        "{events:?}"
    );

    let t = Instant::now();
    s.proxy.set_delay(Duration::ZERO);
    s.wait_ready("slow").await?;
    let recovered_in = t.elapsed();
    let c = s.contents.get(&content_name).await?;
    let status = c.status.clone().unwrap_or_default();
    ensure!(status.error.is_none(), "error not cleared: {status:?}");
    ensure!(
        !c.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .contains_key(n::ANN_VOLUME_SNAPSHOT_BEING_CREATED),
        "being-created left after recovery"
    );
    let on_driver = s.driver_snapshots(Some(&volume)).await?;
    ensure!(
        on_driver.len() == 1,
        "one snapshot expected on the driver: {on_driver:?}"
    );
    let mut event_kinds: Vec<(String, String)> = s
        .content_events(&content_name)
        .await?
        .into_iter()
        .map(|(t, r, _)| (t, r))
        .collect();
    event_kinds.dedup();
    report(
        "recovery",
        &json!({
            "failed": failed_record,
            "events_while_failing": events,
            "recovered": content_record(&c),
            "event_kinds": event_kinds,
        }),
    )?;
    s.snapshots.delete("slow", &DeleteParams::default()).await?;
    s.wait_gone_content(&content_name).await?;
    ensure!(
        s.driver_snapshots(Some(&volume)).await?.is_empty(),
        "snapshot left"
    );
    s.pvcs.delete("slow-src", &DeleteParams::default()).await?;
    println!("[{who}] driver error: recovered {recovered_in:?} after the driver became fast");
    Ok(())
}
