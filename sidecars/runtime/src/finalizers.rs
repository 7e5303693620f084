//! Finalizer edits on any object's metadata, as pure functions the
//! controllers' decisions and writes share.
//!
//! Each edit says whether it changed anything, so a caller writes only when
//! it must; order is kept, as client-go's `controllerutil` keeps it, so an
//! Update built from the cache changes nothing but the one entry.

use kube::Resource;

/// True when `obj` carries `name`.
pub fn has<K: Resource>(obj: &K, name: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == name))
}

/// Appends `name` unless present; true when it was added.
pub fn add<K: Resource>(obj: &mut K, name: &str) -> bool {
    let f = obj.meta_mut().finalizers.get_or_insert_with(Vec::new);
    if f.iter().any(|x| x == name) {
        return false;
    }
    f.push(name.to_string());
    true
}

/// Removes every `name` entry; true when one was removed.
pub fn remove<K: Resource>(obj: &mut K, name: &str) -> bool {
    let Some(f) = obj.meta_mut().finalizers.as_mut() else {
        return false;
    };
    let before = f.len();
    f.retain(|x| x != name);
    f.len() != before
}

/// `finalizers` without `name`, order kept: the list a patch that removes
/// one finalizer sends.
pub fn without(finalizers: &[String], name: &str) -> Vec<String> {
    finalizers.iter().filter(|f| *f != name).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn with(finalizers: &[&str]) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.finalizers = Some(finalizers.iter().map(|s| s.to_string()).collect());
        cm
    }

    #[test]
    fn add_is_idempotent_and_appends() {
        let mut cm = ConfigMap::default();
        assert!(!has(&cm, "a"));
        assert!(add(&mut cm, "a"));
        assert!(!add(&mut cm, "a"));
        assert!(add(&mut cm, "b"));
        assert_eq!(
            cm.metadata.finalizers.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert!(has(&cm, "b"));
    }

    #[test]
    fn remove_keeps_the_others_in_order() {
        let mut cm = with(&["x", "ours", "y", "ours"]);
        assert!(remove(&mut cm, "ours"));
        assert_eq!(
            cm.metadata.finalizers.as_deref(),
            Some(&["x".to_string(), "y".to_string()][..])
        );
        assert!(!remove(&mut cm, "ours"));
        assert!(!remove(&mut ConfigMap::default(), "ours"));
    }

    #[test]
    fn without_leaves_the_input() {
        let list = vec!["a".to_string(), "ours".to_string(), "b".to_string()];
        assert_eq!(
            without(&list, "ours"),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(list.len(), 3);
    }
}
