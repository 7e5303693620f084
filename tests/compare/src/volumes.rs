//! The driver's side: its volumes from CSI ListVolumes, and the end-state
//! accounting against the PVs (leaked, duplicate, missing).

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use csi_client::Connection;
use csi_client::csi::v1::ListVolumesRequest;
use k8s_openapi::api::core::v1::PersistentVolume;

/// One volume as ListVolumes reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverVolume {
    /// `volume_id` (csi-testdriver numbers them 4, 5, ... from each start).
    pub id: String,
    /// The CreateVolume name, from csi-testdriver's `volume_context["name"]`
    /// (empty if absent): the PV name `pvc-<claim uid>`.
    pub name: String,
}

/// Every volume of the driver, following `next_token`.
pub async fn list(conn: &Connection) -> anyhow::Result<Vec<DriverVolume>> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let resp = conn
            .list_volumes(ListVolumesRequest {
                starting_token: token,
                ..Default::default()
            })
            .await
            .context("ListVolumes")?;
        for e in resp.entries {
            if let Some(v) = e.volume {
                let name = v.volume_context.get("name").cloned().unwrap_or_default();
                out.push(DriverVolume {
                    id: v.volume_id,
                    name,
                });
            }
        }
        if resp.next_token.is_empty() {
            return Ok(out);
        }
        token = resp.next_token;
    }
}

/// Driver volumes set against the PVs of our driver.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accounting {
    /// Driver volumes no PV refers to (by `volumeHandle`, and by PV name
    /// when the driver reports the volume's name).
    pub leaked: usize,
    /// Extra driver volumes for one claim: more than one volume with the
    /// same CreateVolume name, plus more than one PV for one claim UID.
    pub duplicates: usize,
    /// PVs whose driver volume does not exist (after a driver restart, or a
    /// DeleteVolume that hit a reused ID).
    pub missing: usize,
}

/// Compares `volumes` with the PVs of `driver` among `pvs`.
pub fn account(volumes: &[DriverVolume], pvs: &[PersistentVolume], driver: &str) -> Accounting {
    let ours: Vec<(&str, &str)> = pvs
        .iter()
        .filter_map(|pv| {
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            (csi.driver == driver).then(|| {
                (
                    pv.metadata.name.as_deref().unwrap_or(""),
                    csi.volume_handle.as_str(),
                )
            })
        })
        .collect();
    let by_handle: HashMap<&str, Vec<&str>> = ours.iter().fold(HashMap::new(), |mut m, (n, h)| {
        m.entry(*h).or_default().push(*n);
        m
    });
    let refers = |v: &DriverVolume| {
        by_handle
            .get(v.id.as_str())
            .is_some_and(|names| v.name.is_empty() || names.contains(&v.name.as_str()))
    };
    let leaked = volumes.iter().filter(|v| !refers(v)).count();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for v in volumes.iter().filter(|v| !v.name.is_empty()) {
        *names.entry(v.name.as_str()).or_default() += 1;
    }
    let mut claims: BTreeMap<&str, usize> = BTreeMap::new();
    for pv in pvs {
        if let Some(uid) = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.uid.as_deref())
        {
            *claims.entry(uid).or_default() += 1;
        }
    }
    let duplicates = names.values().chain(claims.values()).map(|n| n - 1).sum();
    let volume_of: HashMap<&str, &str> = volumes
        .iter()
        .map(|v| (v.id.as_str(), v.name.as_str()))
        .collect();
    let missing = ours
        .iter()
        .filter(|(pv, handle)| match volume_of.get(handle) {
            None => true,
            Some(name) => !name.is_empty() && name != pv,
        })
        .count();
    Accounting {
        leaked,
        duplicates,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{DRIVER, provisioned_pv};

    fn vol(id: &str, name: &str) -> DriverVolume {
        DriverVolume {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn leaked_duplicate_and_missing() {
        let pvs = vec![
            provisioned_pv("ns", "a", "a", "4"),
            provisioned_pv("ns", "b", "b", "5"),
            provisioned_pv("ns", "c", "c", "6"),
        ];
        let volumes = vec![
            vol("4", "pvc-a"),
            vol("5", "pvc-x"),
            vol("7", "pvc-b"),
            vol("8", "pvc-b"),
        ];
        let a = account(&volumes, &pvs, DRIVER);
        // 5 was reused by another name, 7 and 8 have no PV.
        assert_eq!(a.leaked, 3);
        assert_eq!(a.duplicates, 1);
        // pvc-b's handle 5 names another volume; pvc-c's 6 is gone.
        assert_eq!(a.missing, 2);
        let clean = account(&[vol("4", "pvc-a")], &pvs[..1], DRIVER);
        assert_eq!(clean, Accounting::default());
        assert_eq!(account(&[vol("4", "")], &pvs[..1], "other").leaked, 1);
    }
}
