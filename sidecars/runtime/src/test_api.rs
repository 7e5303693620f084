//! An in-memory API server behind a real `kube::Client`, for unit tests:
//! create (POST), get, replace (PUT, with resourceVersion preconditions) and
//! merge-patch of any namespaced resource path.
//!
//! For unit tests only (this crate's, and others' with the `test-util`
//! feature); it panics on a poisoned lock rather than report errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    requests: Vec<(Method, String)>,
    fail_all: Option<u16>,
}

/// The fake server; clones share its objects and request log.
#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

impl FakeApi {
    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let (code, value) = me.handle(&parts.method, parts.uri.path(), &bytes);
                let resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                    .header("content-type", "application/json")
                    .body(Body::from(value.to_string().into_bytes()))
                    .expect("valid response");
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }

    fn handle(&self, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
        let mut st = self.0.lock().unwrap();
        st.requests.push((method.clone(), path.to_owned()));
        if let Some(code) = st.fail_all {
            return status(code, "Injected");
        }
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match *method {
            Method::POST => {
                let name = parsed["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let key = format!("{path}/{name}");
                if st.objects.contains_key(&key) {
                    return status(409, "AlreadyExists");
                }
                st.rv += 1;
                let mut obj = parsed;
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                obj["metadata"]["uid"] = format!("uid-{}", st.rv).into();
                st.objects.insert(key, obj.clone());
                (201, obj)
            }
            Method::GET => match st.objects.get(path) {
                Some(o) => (200, o.clone()),
                None => status(404, "NotFound"),
            },
            Method::PUT => {
                let Some(cur) = st.objects.get(path) else {
                    return status(404, "NotFound");
                };
                if cur["metadata"]["resourceVersion"] != parsed["metadata"]["resourceVersion"] {
                    return status(409, "Conflict");
                }
                let uid = cur["metadata"]["uid"].clone();
                st.rv += 1;
                let mut obj = parsed;
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                obj["metadata"]["uid"] = uid;
                st.objects.insert(path.to_owned(), obj.clone());
                (200, obj)
            }
            Method::PATCH => {
                let Some(mut obj) = st.objects.get(path).cloned() else {
                    return status(404, "NotFound");
                };
                merge(&mut obj, &parsed);
                st.rv += 1;
                obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
                st.objects.insert(path.to_owned(), obj.clone());
                (200, obj)
            }
            _ => status(405, "MethodNotAllowed"),
        }
    }

    /// Objects whose path starts with `prefix`.
    pub fn objects(&self, prefix: &str) -> Vec<Value> {
        let st = self.0.lock().unwrap();
        st.objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The object stored at `path` (e.g. `/api/v1/namespaces/ns/pods/p`).
    pub fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }

    /// Stores an object as another client would (bumps the resourceVersion).
    pub fn put(&self, path: &str, mut obj: Value) {
        let mut st = self.0.lock().unwrap();
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = st.rv.to_string().into();
        st.objects.insert(path.to_owned(), obj);
    }

    /// Forgets every object.
    pub fn clear(&self) {
        self.0.lock().unwrap().objects.clear();
    }

    /// Answers every request from now on with status `code`.
    pub fn fail_all(&self, code: u16) {
        self.0.lock().unwrap().fail_all = Some(code);
    }

    /// Undoes [`FakeApi::fail_all`].
    pub fn heal(&self) {
        self.0.lock().unwrap().fail_all = None;
    }

    /// How many requests used HTTP method `m` (`GET`, `PUT`, …).
    pub fn requests_with_method(&self, m: &str) -> usize {
        let st = self.0.lock().unwrap();
        st.requests
            .iter()
            .filter(|(method, _)| method.as_str() == m)
            .count()
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
