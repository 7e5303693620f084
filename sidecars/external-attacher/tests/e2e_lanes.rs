//! End-to-end: a detach storm does not delay an attach (external-attacher
//! #761), and the backlog is visible (#706).
//!
//! One worker (`--worker-threads=1`) and a driver whose every answer takes
//! 2 s (a delaying proxy in front of the socket). Twelve attached
//! VolumeAttachments are deleted at once, then a thirteenth is created.
//! Upstream's single queue serves it after the twelve ControllerUnpublish
//! calls (~24 s); ours has a separate attach lane and serves it after one
//! ControllerPublish. While the detach lane is backed up, ours reports it in
//! `csi_attacher_backlog{lane="detach"}` and with `Waiting` Events on the
//! VolumeAttachments that waited longer than 15 s.
//!
//! With `CSI_E2E_ATTACHER_BIN` (e.g. upstream's binary) the same scenario
//! runs and the figures are printed; the lane and backlog assertions are
//! about our behaviour beyond upstream.

mod common;

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{WAIT, attached, attachment, connect, create_volume, poll, static_pv, testing_ours};
use k8s_openapi::api::core::v1::{Event, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{DelayProxy, DriverOptions, Testbed, TestbedOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STORM: usize = 12;
const DELAY: Duration = Duration::from_secs(2);

/// GET /metrics over plain HTTP/1.0.
async fn metrics(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_storm_does_not_delay_attach() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let opts = DriverOptions { enable_attach: true, ..DriverOptions::named(common::DRIVER) };
        let setup = common::setup(tb, "e2e-lanes", opts).await?;
        let proxy_path = tb.run_dir().join(format!("lanes-{}.sock", setup.suffix));
        let proxy = DelayProxy::start(&proxy_path, setup.driver.socket_path(), Duration::ZERO)?;
        let port = free_port()?;
        let extra = [
            "--worker-threads=1".to_string(),
            format!("--http-endpoint=127.0.0.1:{port}"),
            // No ListVolumes rounds in the middle of the measurement.
            "--reconcile-sync=10m".to_string(),
        ];
        let attacher = common::spawn_attacher(tb, &setup, "csi-attacher", proxy.socket_path(), &extra)?;

        let conn = connect(setup.driver.socket_path()).await?;
        let pvs: Api<PersistentVolume> = Api::all(admin.clone());
        let vas: Api<VolumeAttachment> = Api::all(admin.clone());
        let mut names = Vec::new();
        for i in 0..=STORM {
            let pv = format!("e2e-lanes-{}-{i}", setup.suffix);
            let vol = create_volume(&conn, &pv).await?;
            pvs.create(&PostParams::default(), &static_pv(&pv, &vol, &setup.ns, "unused")).await?;
            names.push(pv);
        }
        // The storm's VolumeAttachments, attached without delay.
        for pv in &names[..STORM] {
            vas.create(&PostParams::default(), &attachment(pv, pv)).await?;
        }
        for pv in &names[..STORM] {
            poll("storm VolumeAttachment attached", WAIT, || async {
                Ok(vas.get_opt(pv).await?.filter(attached).map(|_| ()))
            })
            .await?;
        }

        // Slow driver, detach storm, then one attach.
        proxy.set_delay(DELAY);
        let storm_started = Instant::now();
        for pv in &names[..STORM] {
            vas.delete(pv, &DeleteParams::default()).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let last = names[STORM].clone();
        let attach_started = Instant::now();
        vas.create(&PostParams::default(), &attachment(&last, &last)).await?;
        let backlog_peak = std::sync::Mutex::new(0.0f64);
        poll("the new VolumeAttachment attached", WAIT, || async {
            if let Ok(text) = metrics(port).await
                && let Some(v) = text
                    .lines()
                    .find(|l| l.starts_with("csi_attacher_backlog{lane=\"detach\"}"))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            {
                let mut peak = backlog_peak.lock().unwrap();
                *peak = peak.max(v);
            }
            Ok(vas.get_opt(&last).await?.filter(attached).map(|_| ()))
        })
        .await?;
        let attach_latency = attach_started.elapsed();
        let backlog_seen = *backlog_peak.lock().unwrap();
        poll("the storm's VolumeAttachments gone", WAIT, || async {
            let mut left = 0;
            for pv in &names[..STORM] {
                left += usize::from(vas.get_opt(pv).await?.is_some());
            }
            Ok((left == 0).then_some(()))
        })
        .await?;
        let storm_time = storm_started.elapsed();
        eprintln!(
            "e2e lanes: {STORM} detaches at {DELAY:?} each with 1 worker: attach served in {attach_latency:.1?}, storm drained in {storm_time:.1?}, peak detach backlog gauge {backlog_seen}"
        );
        let events: Api<Event> = Api::namespaced(admin.clone(), "default");
        let waiting: Vec<_> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Waiting"))
            .filter(|e| e.involved_object.name.as_ref().is_some_and(|n| names.contains(n)))
            .collect();
        eprintln!("e2e lanes: {} Waiting events, e.g. {:?}", waiting.len(), waiting.first().and_then(|e| e.message.clone()));
        if testing_ours() {
            ensure!(
                attach_latency < DELAY * 4,
                "the attach waited {attach_latency:?} behind the detach storm"
            );
            ensure!(backlog_seen >= 2.0, "detach backlog gauge peaked at {backlog_seen}");
            ensure!(!waiting.is_empty(), "no Waiting event although detaches waited > 15 s");
        }
        ensure!(attacher.is_running(), "csi-attacher exited: {}", attacher.log_tail(40));
        Ok(())
    })
    .await
}
