//! End-to-end: claims whose StorageClass names a provisioner secret that
//! cannot be read (missing, or forbidden by RBAC) fail with upstream's event
//! texts, never get the creation intent, and are gone within seconds of
//! their deletion, with no CreateVolume ever sent to the driver.
//!
//! Passes against upstream too (`CSI_E2E_PROVISIONER_BIN=<upstream
//! csi-provisioner>`), where the intent check is vacuous.

mod common;

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{WAIT, claim, poll, setup, spawn_provisioner, storage_class};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use testbed::{Testbed, TestbedOptions};

const INTENT: &str = "external-provisioner.volume.kubernetes.io/create-in-progress";

/// The secret in the claim's namespace is readable (a Role grants `get`)
/// but absent; the one in `default` is forbidden (upstream's RBAC grants
/// no secrets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_provisioner_secret_never_holds_the_claim() -> anyhow::Result<()> {
    Testbed::run(TestbedOptions::default(), async |tb: &Testbed| -> anyhow::Result<()> {
        let admin = tb.admin_client();
        let setup = setup(tb, "e2e-secret").await?;
        let (ns, suffix) = (setup.ns.clone(), setup.suffix.clone());
        grant_secret_reads(&admin, &ns).await?;
        let provisioner = spawn_provisioner(tb, &setup, "csi-provisioner", setup.driver.socket_path(), &[])?;

        let missing_class = format!("e2e-secret-missing-{suffix}");
        let forbidden_class = format!("e2e-secret-forbidden-{suffix}");
        let classes: Api<StorageClass> = Api::all(admin.clone());
        let secret_params = |name: &'static str, namespace: &'static str| {
            [
                ("csi.storage.k8s.io/provisioner-secret-name", name),
                ("csi.storage.k8s.io/provisioner-secret-namespace", namespace),
            ]
        };
        classes.create(&PostParams::default(), &storage_class(&missing_class, &secret_params("absent", "${pvc.namespace}"))).await?;
        classes.create(&PostParams::default(), &storage_class(&forbidden_class, &secret_params("creds", "default"))).await?;

        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        pvcs.create(&PostParams::default(), &claim("missing", &missing_class)).await?;
        pvcs.create(&PostParams::default(), &claim("forbidden", &forbidden_class)).await?;

        let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
        let missing = failure_message(&events, "missing").await?;
        ensure!(
            missing == format!("error getting secret absent in namespace {ns}: secrets \"absent\" not found"),
            "ProvisioningFailed of the missing secret reads: {missing}"
        );
        let forbidden = failure_message(&events, "forbidden").await?;
        ensure!(
            forbidden.starts_with("error getting secret creds in namespace default: secrets \"creds\" is forbidden: User \"system:serviceaccount:")
                && forbidden.ends_with("cannot get resource \"secrets\" in API group \"\" in the namespace \"default\""),
            "ProvisioningFailed of the forbidden secret reads: {forbidden}"
        );
        for name in ["missing", "forbidden"] {
            let normal = events
                .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                .await?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Provisioning"));
            ensure!(
                normal.and_then(|e| e.message).as_deref()
                    == Some(format!("External provisioner is provisioning volume for claim \"{ns}/{name}\"").as_str()),
                "claim {name} has no Normal Provisioning event before its failure"
            );
            let finalizers = pvcs.get(name).await?.metadata.finalizers.unwrap_or_default();
            ensure!(!finalizers.iter().any(|f| f == INTENT), "claim {name} carries {INTENT} although CreateVolume was never sent: {finalizers:?}");
        }
        let recorded = common::recorded_intents(&admin, &ns).await?;
        ensure!(recorded.is_empty(), "volume creations recorded although CreateVolume was never sent: {recorded:?}");

        let deleted_at = Instant::now();
        pvcs.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
        poll("both claims gone", Duration::from_secs(30), || async {
            Ok(pvcs.list(&ListParams::default()).await?.items.is_empty().then_some(()))
        })
        .await?;
        let gone_in = deleted_at.elapsed();

        let driver_log = std::fs::read_to_string(setup.driver.process().log_path())?;
        let creates = driver_log.lines().filter(|l| l.contains("/csi.v1.Controller/CreateVolume")).count();
        ensure!(creates == 0, "the driver received {creates} CreateVolume calls");
        ensure!(provisioner.is_running(), "csi-provisioner exited: {}", provisioner.log_tail(40));
        eprintln!("e2e: claims with an unreadable provisioner secret gone {gone_in:.2?} after their deletion; 0 CreateVolume calls");

        for class in [&missing_class, &forbidden_class] {
            classes.delete(class, &DeleteParams::default()).await?;
        }
        Ok(())
    })
    .await
}

/// The first ProvisioningFailed message on claim `name`.
async fn failure_message(events: &Api<Event>, name: &str) -> anyhow::Result<String> {
    poll(
        &format!("ProvisioningFailed on claim {name}"),
        WAIT,
        || async {
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                .await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ProvisioningFailed"))
                .map(|e| e.message.unwrap_or_default()))
        },
    )
    .await
}

/// A Role that lets the provisioner's ServiceAccount read Secrets in `ns`
/// only, as a driver's deployment adds to upstream's RBAC when its classes
/// name secrets.
async fn grant_secret_reads(admin: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let meta = || ObjectMeta {
        name: Some("csi-provisioner-secrets".into()),
        namespace: Some(ns.into()),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "csi-provisioner-secrets".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "csi-provisioner".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}
