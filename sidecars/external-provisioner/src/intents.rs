//! The creation-intent record: which claims may have a volume on the
//! driver that no PV records yet, kept in a few Lease objects so the record
//! costs batched writes instead of two claim Updates per volume.
//!
//! Upstream keeps "CreateVolume may be in flight" in memory only
//! (external-provisioner#486). Here every claim gets an entry before its
//! first CreateVolume, and loses it once its PV is saved or its volume is
//! known not to exist. An entry is one annotation on one of
//! [`SHARDS`] Leases (`<lease>-create-in-progress-<i>`, in the namespace
//! leader election uses, which upstream's RBAC already lets the
//! provisioner write):
//!
//! * key: `external-provisioner.volume.kubernetes.io/create-in-progress-<claim UID>`;
//! * value: the claim as JSON, trimmed to what repeating CreateVolume needs
//!   (name, namespace, UID, annotations, spec; see [`trim_claim`]), so the
//!   volume can be found and deleted after the claim itself is gone.
//!
//! Limits: an annotation map holds at most 256 KiB, so a shard refuses new
//! entries beyond [`SHARD_BUDGET_BYTES`] (about 300 typical claims per
//! shard, 2,400 creations in flight in all); a refused claim retries with
//! its backoff, and the error says so. Which shard holds an entry is only
//! known from the Leases themselves: all of them are read at start. Claims carrying the older per-claim
//! finalizer ([`crate::annotations::CREATE_INTENT_FINALIZER`]) are still
//! honoured.
//!
//! Everything here is pure; [`crate::intent_log`] does the I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// How many Leases share the record. New entries go to the first shard
/// with room, so a burst normally shares one Lease and one writer; the
/// others take the overflow.
pub const SHARDS: usize = 8;

/// The annotation key prefix of one entry; the claim UID follows.
pub const ENTRY_PREFIX: &str = "external-provisioner.volume.kubernetes.io/create-in-progress-";

/// The most a shard's entries may take (keys plus values, in bytes): under
/// the API server's 256 KiB annotation limit, with room for the Lease's own.
pub const SHARD_BUDGET_BYTES: usize = 200 * 1024;

/// Annotations never copied into an entry: large, and never read by
/// CreateVolume or its secret templates.
const DROPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// The name of shard `i` for the leader-election lock name `lease` (already
/// sanitised, e.g. `hostpath-csi-k8s-io`); in node deployment `node` keeps
/// each node's record apart.
pub fn shard_name(lease: &str, node: Option<&str>, i: usize) -> String {
    match node {
        Some(n) => format!("{lease}-{n}-create-in-progress-{i}"),
        None => format!("{lease}-create-in-progress-{i}"),
    }
}

/// The annotation key of `uid`'s entry.
pub fn entry_key(uid: &str) -> String {
    format!("{ENTRY_PREFIX}{uid}")
}

/// The claim UID an annotation key records, if it is an entry key.
pub fn entry_uid(key: &str) -> Option<&str> {
    key.strip_prefix(ENTRY_PREFIX).filter(|u| !u.is_empty())
}

/// The part of a claim an entry keeps: identity, annotations (secret
/// templates may read them) and spec. Status, labels, finalizers, owner
/// references and managed fields are dropped.
pub fn trim_claim(pvc: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let annotations = pvc.metadata.annotations.as_ref().map(|a| {
        a.iter()
            .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: pvc.metadata.name.clone(),
            namespace: pvc.metadata.namespace.clone(),
            uid: pvc.metadata.uid.clone(),
            annotations: annotations.filter(|a| !a.is_empty()),
            ..Default::default()
        },
        spec: pvc.spec.clone(),
        status: None,
    }
}

/// An entry's value: the trimmed claim as compact JSON.
///
/// Errors: only if serialisation fails, which a claim decoded from the API
/// cannot make happen; the text says which claim.
pub fn encode(pvc: &PersistentVolumeClaim) -> Result<String, String> {
    serde_json::to_string(&trim_claim(pvc)).map_err(|e| {
        format!(
            "cannot record claim {}: {e}",
            pvc.metadata.uid.as_deref().unwrap_or_default()
        )
    })
}

/// The entries of one shard's annotations, by claim UID. An entry whose
/// value does not decode is returned in the second list (its UID), so the
/// caller can say so instead of dropping it silently.
pub fn decode(
    annotations: &BTreeMap<String, String>,
) -> (BTreeMap<String, PersistentVolumeClaim>, Vec<String>) {
    let mut good = BTreeMap::new();
    let mut bad = Vec::new();
    for (k, v) in annotations {
        let Some(uid) = entry_uid(k) else { continue };
        match serde_json::from_str::<PersistentVolumeClaim>(v) {
            Ok(pvc) if pvc.metadata.uid.as_deref() == Some(uid) => {
                good.insert(uid.to_string(), pvc);
            }
            _ => bad.push(uid.to_string()),
        }
    }
    (good, bad)
}

/// The bytes a shard's entries take, as the API server counts annotation
/// size (keys plus values).
pub fn entries_size<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    entries
        .into_iter()
        .map(|(uid, v)| ENTRY_PREFIX.len() + uid.len() + v.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

    fn claim(uid: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("team-a".into()),
                uid: Some(uid.into()),
                labels: Some([("app".to_string(), "db".to_string())].into()),
                finalizers: Some(vec!["kubernetes.io/pvc-protection".into()]),
                resource_version: Some("42".into()),
                annotations: Some(
                    [
                        (
                            "volume.kubernetes.io/selected-node".to_string(),
                            "n1".to_string(),
                        ),
                        (
                            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                            "{...}".to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("fast".into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                ..Default::default()
            }),
            status: Some(Default::default()),
        }
    }

    #[test]
    fn an_entry_keeps_what_create_volume_needs_and_nothing_else() {
        let t = trim_claim(&claim("u1"));
        assert_eq!(t.metadata.name.as_deref(), Some("data"));
        assert_eq!(t.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(t.metadata.uid.as_deref(), Some("u1"));
        let a = t.metadata.annotations.unwrap();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a["volume.kubernetes.io/selected-node"], "n1");
        assert!(t.metadata.labels.is_none());
        assert!(t.metadata.finalizers.is_none());
        assert!(t.metadata.resource_version.is_none());
        assert!(t.status.is_none());
        assert_eq!(t.spec.unwrap().storage_class_name.as_deref(), Some("fast"));
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_reported() {
        let mut ann = BTreeMap::new();
        ann.insert(entry_key("u1"), encode(&claim("u1")).unwrap());
        ann.insert(entry_key("u2"), "not json".to_string());
        // A value recording another claim than its key says is not trusted.
        ann.insert(entry_key("u3"), encode(&claim("u4")).unwrap());
        ann.insert("unrelated/key".to_string(), "x".to_string());
        let (good, bad) = decode(&ann);
        assert_eq!(good.keys().collect::<Vec<_>>(), vec!["u1"]);
        assert_eq!(good["u1"], trim_claim(&claim("u1")));
        assert_eq!(bad, vec!["u2".to_string(), "u3".to_string()]);
    }

    #[test]
    fn keys_are_valid_annotation_names() {
        let key = entry_key("9c7f1f4e-5a41-4a57-9b0e-3f7f0d7b2a11");
        let (prefix, name) = key.split_once('/').unwrap();
        assert!(prefix.len() <= 253);
        assert!(name.len() <= 63, "{} chars", name.len());
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_eq!(
            entry_uid(&key),
            Some("9c7f1f4e-5a41-4a57-9b0e-3f7f0d7b2a11")
        );
        assert_eq!(entry_uid(ENTRY_PREFIX), None);
    }

    #[test]
    fn shard_names_follow_the_lease_and_the_node() {
        assert_eq!(
            shard_name("hostpath-csi-k8s-io", None, 3),
            "hostpath-csi-k8s-io-create-in-progress-3"
        );
        assert_eq!(
            shard_name("hostpath-csi-k8s-io", Some("node-1"), 0),
            "hostpath-csi-k8s-io-node-1-create-in-progress-0"
        );
    }

    #[test]
    fn size_counts_keys_and_values() {
        let v = encode(&claim("u1")).unwrap();
        let mut m = BTreeMap::new();
        m.insert("u1".to_string(), v.clone());
        assert_eq!(entries_size(&m), entry_key("u1").len() + v.len());
        // A typical claim leaves room for hundreds of entries per shard.
        assert!(SHARD_BUDGET_BYTES / entries_size(&m) > 300);
    }
}
