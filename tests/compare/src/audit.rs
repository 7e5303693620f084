//! The API server's audit log: the policy that records only the sidecar's
//! requests, and counting them.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

/// Audit policy: metadata of every request of `user`, nothing else.
pub fn policy(user: &str) -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\n\
         kind: Policy\n\
         omitStages: [\"RequestReceived\"]\n\
         rules:\n\
         - level: Metadata\n  users: [\"{user}\"]\n\
         - level: None\n"
    )
}

/// Requests counted once per `auditID`.
#[derive(Debug, Default, Clone)]
pub struct Requests {
    /// `(verb, resource[/subresource] or the path of a non-resource
    /// request, response code)` → count.
    pub by_verb_resource: BTreeMap<(String, String, String), u64>,
    /// Received time of each request.
    pub times: Vec<Timestamp>,
}

impl Requests {
    /// Every request.
    pub fn total(&self) -> u64 {
        self.by_verb_resource.values().sum()
    }

    /// Counts by `verb resource`, response codes added up.
    pub fn by_verb_resource_merged(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((verb, resource, _), n) in &self.by_verb_resource {
            *out.entry(format!("{verb} {resource}")).or_default() += n;
        }
        out
    }

    /// Requests received in `[from, to)`.
    pub fn between(&self, from: Timestamp, to: Timestamp) -> u64 {
        self.times
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count() as u64
    }
}

/// Counts the events of `user` in a JSON-lines audit log; a request logged in
/// several stages (a watch: ResponseStarted, ResponseComplete) counts once.
pub fn count(log: &str, user: &str) -> Requests {
    let mut seen = HashSet::new();
    let mut out = Requests::default();
    for line in log.lines() {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if ev["user"]["username"].as_str() != Some(user) {
            continue;
        }
        let Some(id) = ev["auditID"].as_str() else {
            continue;
        };
        if !seen.insert(id.to_string()) {
            continue;
        }
        let verb = ev["verb"].as_str().unwrap_or("?").to_string();
        let obj = &ev["objectRef"];
        let resource = match (obj["resource"].as_str(), obj["subresource"].as_str()) {
            (Some(r), Some(sub)) => format!("{r}/{sub}"),
            (Some(r), None) => r.to_string(),
            _ => ev["requestURI"].as_str().unwrap_or("?").to_string(),
        };
        let code = ev["responseStatus"]["code"]
            .as_u64()
            .map_or("?".to_string(), |c| c.to_string());
        *out.by_verb_resource
            .entry((verb, resource, code))
            .or_default() += 1;
        if let Some(t) = ev["requestReceivedTimestamp"]
            .as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
        {
            out.times.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "system:serviceaccount:compare:csi-provisioner";

    #[test]
    fn counts_a_watch_once() {
        let log = [
            r#"{"kind":"Event","auditID":"a1","stage":"ResponseStarted","verb":"watch","user":{"username":"system:serviceaccount:compare:csi-provisioner"},"objectRef":{"resource":"persistentvolumeclaims","apiVersion":"v1"},"requestReceivedTimestamp":"2025-01-01T00:00:00.100000Z"}"#,
            r#"{"kind":"Event","auditID":"b2","stage":"ResponseComplete","verb":"patch","user":{"username":"system:serviceaccount:compare:csi-provisioner"},"objectRef":{"resource":"persistentvolumeclaims","subresource":"status","namespace":"compare"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2025-01-01T00:00:01Z"}"#,
            r#"{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"watch","user":{"username":"system:serviceaccount:compare:csi-provisioner"},"objectRef":{"resource":"persistentvolumeclaims","apiVersion":"v1"},"requestReceivedTimestamp":"2025-01-01T00:00:00.100000Z"}"#,
            r#"{"kind":"Event","auditID":"c3","stage":"ResponseComplete","verb":"get","user":{"username":"admin"},"objectRef":{"resource":"pods"}}"#,
            "not json",
        ]
        .join("\n");
        let r = count(&log, USER);
        assert_eq!(r.total(), 2);
        let key = |v: &str, r: &str, c: &str| (v.to_string(), r.to_string(), c.to_string());
        let watch = key("watch", "persistentvolumeclaims", "?");
        let patch = key("patch", "persistentvolumeclaims/status", "200");
        assert_eq!(r.by_verb_resource[&watch], 1);
        assert_eq!(r.by_verb_resource[&patch], 1);
        let t0: Timestamp = "2025-01-01T00:00:00.500Z".parse().unwrap();
        let t1: Timestamp = "2025-01-01T00:00:02Z".parse().unwrap();
        assert_eq!(r.between(t0, t1), 1);
        let merged = r.by_verb_resource_merged();
        assert_eq!(merged["watch persistentvolumeclaims"], 1);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn policy_names_the_user() {
        let p = policy(USER);
        assert!(p.contains(
            "level: Metadata\n  users: [\"system:serviceaccount:compare:csi-provisioner\"]"
        ));
        assert!(p.ends_with("- level: None\n"));
    }
}
