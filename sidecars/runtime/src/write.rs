//! Updates built from the freshest cached version of an object, after their
//! QPS token is taken.
//!
//! Under a client-side throttle (upstream's default is 5 requests/s) a
//! write built when a reconcile starts can wait seconds for its token, and
//! by then the cache may hold a newer version: the write conflicts and a
//! client-go controller re-reads with a GET. Here the token is taken first
//! ([`Prepaid`]), then the object is read from the reflector store (or,
//! when this process replaced the cached version itself, the version it
//! wrote), then `change` is applied and the Update sent with that version's
//! resourceVersion. Nobody else's edit is ever overwritten; a 409 means
//! someone wrote in between, and their write arrives through the watch and
//! triggers the next reconcile, so it is returned as
//! [`Error::WriteConflict`] instead of being retried with a GET.
//!
//! Updates, not patches: upstream's RBAC grants `update` on claims and
//! snapshots, not `patch`.

use std::fmt::Debug;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::kube_client::Prepaid;
use crate::own_writes::OwnWrites;

/// How a write gets its QPS token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// Waits for one now: someone waits for the write.
    Now,
    /// Starts new work: waits until no request of work already started
    /// waits ([`ApiBudget::acquire_low`](crate::kube_client::ApiBudget::acquire_low)),
    /// so under a throttle backlog started work finishes first.
    Start,
    /// The caller already took one (for example a spare one with
    /// [`ApiBudget::try_acquire_spare`](crate::kube_client::ApiBudget::try_acquire_spare)).
    Paid,
}

/// Replaces objects of kind `K` from the freshest version known to this
/// process. Cheap to clone.
#[derive(Clone)]
pub struct CachedWriter<K: Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    prepaid: Prepaid,
    store: Store<K>,
    /// Namespaced or cluster-wide `Api`, fixed by the constructor (kube's
    /// `Api` constructors are typed by the resource's scope).
    api: fn(kube::Client, &str) -> Api<K>,
}

impl<K> CachedWriter<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// A writer of namespaced objects over `store` (the controller's cache
    /// of `K`), sending with `prepaid`'s client after taking its token.
    pub fn namespaced(prepaid: Prepaid, store: Store<K>) -> Self
    where
        K: Resource<Scope = NamespaceResourceScope>,
    {
        CachedWriter {
            prepaid,
            store,
            api: |client, ns| Api::namespaced(client, ns),
        }
    }

    /// A writer of cluster-scoped objects; see [`CachedWriter::namespaced`].
    pub fn cluster(prepaid: Prepaid, store: Store<K>) -> Self
    where
        K: Resource<Scope = ClusterResourceScope>,
    {
        CachedWriter {
            prepaid,
            store,
            api: |client, _| Api::all(client),
        }
    }

    /// Applies `change` to the freshest version of `obj` and writes it with
    /// an Update carrying that version's resourceVersion; `change` returns
    /// false when there is nothing to write.
    ///
    /// Returns the written object, `None` when nothing needed writing or the
    /// object is gone (404, not in the cache, or re-created under another
    /// UID). Errors: [`Error::WriteConflict`] on 409, [`Error::Write`]
    /// otherwise; `what` names the write in both.
    pub async fn replace(
        &self,
        obj: &K,
        own_writes: &OwnWrites,
        what: &str,
        urgency: Urgency,
        change: impl Fn(&mut K) -> bool,
    ) -> Result<Option<K>, Error> {
        match urgency {
            Urgency::Now => self.prepaid.budget.acquire().await,
            Urgency::Start => self.prepaid.budget.acquire_low().await,
            Urgency::Paid => {}
        }
        let Some(base) = freshest(&self.store, own_writes, obj) else {
            return Ok(None);
        };
        let mut updated = base.clone();
        if !change(&mut updated) {
            return Ok(None);
        }
        let api = (self.api)(
            self.prepaid.client.clone(),
            &obj.namespace().unwrap_or_default(),
        );
        match api
            .replace(&obj.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                own_writes.replaced(
                    &obj.uid().unwrap_or_default(),
                    base.resource_version().as_deref(),
                );
                Ok(Some(written))
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::WriteConflict {
                what: what.to_string(),
                object: object_name(obj),
            }),
            Err(source) => Err(Error::Write {
                what: what.to_string(),
                object: object_name(obj),
                source,
            }),
        }
    }
}

/// The newest known version of `obj`: the cache's, unless it is one this
/// process has already replaced (then `obj`, which may be what it wrote).
/// `None` when the object is gone or was re-created under another UID.
pub fn freshest<K>(store: &Store<K>, own_writes: &OwnWrites, obj: &K) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut key = ObjectRef::new(&obj.name_any());
    if let Some(ns) = obj.namespace() {
        key = key.within(&ns);
    }
    let cached = store.get(&key)?;
    if cached.uid() != obj.uid() {
        return None;
    }
    if own_writes.is_object_stale(cached.as_ref()) {
        return Some(obj.clone());
    }
    Some((*cached).clone())
}

fn object_name<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let kind = K::kind(&());
    match obj.namespace() {
        Some(ns) => format!("{kind} {ns}/{}", obj.name_any()),
        None => format!("{kind} {}", obj.name_any()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::runtime::{reflector, watcher};

    fn claim(uid: &str, rv: &str) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("c".into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some(uid.into());
        c.metadata.resource_version = Some(rv.into());
        c
    }

    fn store_with(
        objs: Vec<PersistentVolumeClaim>,
    ) -> (
        Store<PersistentVolumeClaim>,
        reflector::store::Writer<PersistentVolumeClaim>,
    ) {
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objs {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        (reader, writer)
    }

    #[test]
    fn freshest_prefers_the_cache_unless_we_replaced_it() {
        let own = OwnWrites::default();
        let (store, _w) = store_with(vec![claim("u1", "5")]);
        let ours = claim("u1", "3");
        assert_eq!(
            freshest(&store, &own, &ours).and_then(|c| c.metadata.resource_version),
            Some("5".into())
        );
        // We replaced version 5 ourselves: the cache is stale until the
        // watch delivers our write, so the version we hold wins.
        own.replaced("u1", Some("5"));
        assert_eq!(
            freshest(&store, &own, &ours).and_then(|c| c.metadata.resource_version),
            Some("3".into())
        );
    }

    #[test]
    fn freshest_is_none_for_a_recreated_or_missing_object() {
        let own = OwnWrites::default();
        let (store, _w) = store_with(vec![claim("u2", "7")]);
        let (empty, _e) = store_with(vec![]);
        assert!(freshest(&store, &own, &claim("u1", "3")).is_none());
        assert!(freshest(&empty, &own, &claim("u1", "3")).is_none());
    }

    #[test]
    fn names_say_kind_and_namespace() {
        assert_eq!(object_name(&claim("u", "1")), "PersistentVolumeClaim ns/c");
    }
}
