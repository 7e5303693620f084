//! The state the crash scenarios count: claims, PVs and driver volumes
//! from fresh lists, and whether it is the goal state.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use crate::bed::Bed;
use crate::objects::{DRIVER, NS};
use crate::volumes::{self, Accounting};

/// The end state, from fresh lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Claims of the kept half that are Bound.
    pub kept_bound: usize,
    /// Claims neither Bound nor being deleted.
    pub claims_pending: usize,
    /// Claims being deleted.
    pub claims_terminating: usize,
    /// Claims that exist.
    pub claims: usize,
    /// PVs of [`NS`]'s claims.
    pub pvs: usize,
    /// Of those, Bound.
    pub pvs_bound: usize,
    /// Delete policy and Released, Failed or being deleted.
    pub pvs_stuck: usize,
    /// Volumes the driver lists.
    pub driver_volumes: usize,
    /// Driver volumes against PVs.
    pub acc: Accounting,
}

impl Observed {
    /// The kept claims Bound with a PV each, nothing else left, nothing leaked.
    pub fn goal(&self, kept: usize) -> bool {
        self.kept_bound == kept
            && self.claims == kept
            && self.pvs == kept
            && self.pvs_bound == kept
            && self.acc.leaked == 0
            && self.acc.duplicates == 0
    }
}

/// Lists claims of [`NS`] (claim-<i> with i >= `kept_from` are kept), PVs
/// and the driver's volumes.
pub async fn observe(
    bed: &Bed,
    conn: &csi_client::Connection,
    kept_from: usize,
) -> anyhow::Result<Observed> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(bed.admin.clone(), NS)
        .list(&ListParams::default())
        .await?
        .items;
    let pvs: Vec<PersistentVolume> = Api::<PersistentVolume>::all(bed.admin.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let vols = volumes::list(conn).await?;
    let phase = |c: &PersistentVolumeClaim| c.status.as_ref().and_then(|s| s.phase.clone());
    let kept = |c: &PersistentVolumeClaim| {
        c.name_any()
            .strip_prefix("claim-")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i >= kept_from)
    };
    let ns_pvs: Vec<&PersistentVolume> = pvs
        .iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|c| c.namespace.as_deref())
                == Some(NS)
        })
        .collect();
    let pv_phase = |pv: &PersistentVolume| pv.status.as_ref().and_then(|s| s.phase.clone());
    Ok(Observed {
        kept_bound: claims
            .iter()
            .filter(|c| kept(c) && phase(c).as_deref() == Some("Bound"))
            .count(),
        claims_pending: claims
            .iter()
            .filter(|c| {
                c.metadata.deletion_timestamp.is_none() && phase(c).as_deref() != Some("Bound")
            })
            .count(),
        claims_terminating: claims
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
            .count(),
        claims: claims.len(),
        pvs: ns_pvs.len(),
        pvs_bound: ns_pvs
            .iter()
            .filter(|pv| pv_phase(pv).as_deref() == Some("Bound"))
            .count(),
        pvs_stuck: ns_pvs
            .iter()
            .filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                    == Some("Delete")
                    && (pv.metadata.deletion_timestamp.is_some()
                        || matches!(pv_phase(pv).as_deref(), Some("Released" | "Failed")))
            })
            .count(),
        driver_volumes: vols.len(),
        acc: volumes::account(&vols, &pvs, DRIVER),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_needs_every_kept_claim_bound_and_nothing_else() {
        let done = Observed {
            kept_bound: 3,
            claims: 3,
            pvs: 3,
            pvs_bound: 3,
            driver_volumes: 3,
            ..Default::default()
        };
        assert!(done.goal(3));
        assert!(!done.goal(4));
        let leak = Observed {
            acc: Accounting {
                leaked: 1,
                ..Default::default()
            },
            ..done.clone()
        };
        assert!(!leak.goal(3));
        let terminating = Observed {
            claims: 4,
            claims_terminating: 1,
            ..done.clone()
        };
        assert!(!terminating.goal(3));
        let released = Observed {
            pvs: 4,
            pvs_stuck: 1,
            ..done
        };
        assert!(!released.goal(3));
    }
}
