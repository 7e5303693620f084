//! What upstream's `main.go` does before the controllers run: wait for the
//! snapshot CRDs (`ensureCustomResourceDefinitionsExist`), then build the
//! controllers' setup.

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use snapshot_api::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use tracing::{info, warn};

use crate::Error;

/// Lists one object of each v1 snapshot kind until all three answer,
/// retrying with upstream's backoff (100 ms, ×1.5) for at most `max`.
///
/// Errors: [`Error::Crds`] with the last failure once `max` has passed.
pub async fn wait_for_crds(client: &kube::Client, max: Duration) -> Result<(), Error> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let lp = ListParams::default().limit(1);
    loop {
        let attempt = async {
            Api::<VolumeSnapshot>::all(client.clone())
                .list_metadata(&lp)
                .await
                .map_err(|e| format!("failed to list v1 volumesnapshots: {e}"))?;
            Api::<VolumeSnapshotContent>::all(client.clone())
                .list_metadata(&lp)
                .await
                .map_err(|e| format!("failed to list v1 volumesnapshotcontents: {e}"))?;
            Api::<VolumeSnapshotClass>::all(client.clone())
                .list_metadata(&lp)
                .await
                .map_err(|e| format!("failed to list v1 volumesnapshotclasses: {e}"))?;
            Ok::<(), String>(())
        };
        match attempt.await {
            Ok(()) => {
                info!("snapshot CRDs are served");
                return Ok(());
            }
            Err(e) if started.elapsed() + delay > max => return Err(Error::Crds(e)),
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "waiting for the snapshot CRDs");
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(1.5);
            }
        }
    }
}
