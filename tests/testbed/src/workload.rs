//! Workloads for node tests: what a user's Pod looks like to the kubelet.

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::PAUSE_IMAGE;

/// A Pod named `name` on `node` that mounts claim `claim` read-write at
/// `/data`. Its one container runs [`PAUSE_IMAGE`], the only workload image
/// the node has (images never pull): all it must do is run, so that the
/// kubelet stages and publishes the volume.
pub fn workload_pod(name: &str, node: &str, claim: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            termination_grace_period_seconds: Some(2),
            containers: vec![Container {
                name: "app".into(),
                image: Some(PAUSE_IMAGE.into()),
                image_pull_policy: Some("Never".into()),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: Some(false),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
