//! csi-attacher: a drop-in replacement for kubernetes-csi external-attacher
//! v4.12.0.
//!
//! It watches VolumeAttachments naming the CSI driver behind
//! `--csi-address`, calls ControllerPublishVolume for new ones and
//! ControllerUnpublishVolume for deleted ones, and records the outcome in
//! `status` (`attached`, `attachmentMetadata`, `attachError`,
//! `detachError`), with the `external-attacher/<driver>` finalizer on the
//! VolumeAttachment and its PersistentVolume as upstream.
//!
//! Layout: the rules are pure functions in [`decide`], unit-tested with
//! plain values; [`controller`] does the I/O around them.
//!
//! # Beyond upstream
//!
//! * Separate attach and detach lanes (external-attacher#761): each lane
//!   has its own queue and `--worker-threads` workers, so a storm of slow or
//!   failing detaches never delays an attach. A VolumeAttachment is never
//!   worked on by both lanes at once.
//! * The backlog is visible (external-attacher#706): per-lane gauges
//!   `csi_attacher_backlog` and `csi_attacher_oldest_wait_seconds`, and a
//!   Normal Event `Waiting` on a VolumeAttachment that waited longer than
//!   [`controller::BACKLOG_EVENT_AFTER`] for a worker; attach and detach
//!   failures are also Warning Events (`AttachFailed`, `DetachFailed`) next to
//!   `status.attachError`/`detachError`. Upstream's RBAC grants no Events;
//!   without that grant they are dropped (logged), as upstream's own
//!   LeaderElection events are.
//! * The ListVolumes reconciliation's force-sync holds only while
//!   `status.attached` is what it saw: an attach in flight at its tick
//!   (not attached yet, already published on the driver) is not published
//!   a second time once it is done.
//! * No leaked attachment: the VolumeAttachment finalizer and node-ID
//!   annotation are written before ControllerPublish (as upstream), so a
//!   kill -9 or a lost Lease mid-publish leaves a finalizer that makes the
//!   next leader run ControllerUnpublish before the VolumeAttachment can go.

pub mod args;
pub mod controller;
pub mod decide;
pub mod error;
pub mod features;
pub mod names;
