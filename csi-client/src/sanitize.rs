//! Secret-stripped one-line JSON of CSI messages for logs, the equivalent of
//! csi-lib-utils `protosanitizer.StripSecrets`.
//!
//! Which fields are secret is read from the `(csi.v1.csi_secret)` field
//! option (extension 1059 of `google.protobuf.FieldOptions`) in the embedded
//! descriptor set, so fields a newer spec marks secret are covered by
//! regenerating, never by editing a list.

use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, Value};
use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// Replacement text for a populated secret field.
pub const STRIPPED: &str = "***stripped***";

/// Full name of the CSI option marking a field as secret.
pub const CSI_SECRET_EXTENSION: &str = "csi.v1.csi_secret";

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_else(|err| {
        tracing::error!(%err, "embedded CSI descriptor set does not decode; logs will not show messages");
        DescriptorPool::new()
    })
});

static SECRET_FIELDS: LazyLock<BTreeSet<String>> = LazyLock::new(|| find_secret_fields(&POOL));

/// The descriptor pool of the embedded CSI and plugin-registration protos
/// (with their google/protobuf imports).
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// Full names (`csi.v1.CreateVolumeRequest.secrets`) of every field whose
/// options set `(csi.v1.csi_secret) = true`.
pub fn secret_fields() -> &'static BTreeSet<String> {
    &SECRET_FIELDS
}

fn find_secret_fields(pool: &DescriptorPool) -> BTreeSet<String> {
    let Some(ext) = pool.get_extension_by_name(CSI_SECRET_EXTENSION) else {
        return BTreeSet::new();
    };
    // get_extension on a message of another type would panic.
    if ext.containing_message().full_name() != "google.protobuf.FieldOptions" {
        return BTreeSet::new();
    }
    pool.all_messages()
        .flat_map(|m| m.fields().collect::<Vec<_>>())
        .filter(|f| {
            let options = f.options();
            options.has_extension(&ext) && options.get_extension(&ext).as_bool() == Some(true)
        })
        .map(|f| f.full_name().to_owned())
        .collect()
}

/// Renders `msg` as one-line JSON with every secret field replaced by
/// `"***stripped***"` at any depth.
///
/// Shape (matching `protosanitizer`): only populated fields; keys are proto
/// field names sorted alphabetically; enums by name (unknown numbers as
/// numbers); 64-bit integers as JSON numbers; bytes as standard base64;
/// maps as objects; a set oneof member under its own name; wrapper types as
/// `{"value":…}`; unknown fields dropped; `<`, `>`, `&` escaped as Go's
/// `encoding/json` does. Never fails: a message missing from the embedded
/// descriptors renders as `<<…>>`.
pub fn strip_secrets_json<M: prost::Message + prost::Name>(msg: &M) -> String {
    strip_secrets_encoded(&M::full_name(), &msg.encode_to_vec())
}

/// Like [`strip_secrets_json`] for an already encoded message of the given
/// full proto name (e.g. `csi.v1.CreateVolumeRequest`).
pub fn strip_secrets_encoded(full_name: &str, encoded: &[u8]) -> String {
    let Some(desc) = POOL.get_message_by_name(full_name) else {
        return format!("<<no descriptor for {full_name}>>");
    };
    match DynamicMessage::decode(desc, encoded) {
        Ok(msg) => strip_secrets_dynamic(&msg),
        Err(err) => format!("<<cannot decode {full_name}: {err}>>"),
    }
}

/// Like [`strip_secrets_json`] for a message already in dynamic form.
pub fn strip_secrets_dynamic(msg: &DynamicMessage) -> String {
    go_html_escape(&message_json(msg).to_string())
}

fn message_json(msg: &DynamicMessage) -> Json {
    let mut fields: Vec<_> = msg.fields().collect();
    fields.sort_by(|(a, _), (b, _)| a.name().cmp(b.name()));
    let mut out = Map::new();
    for (field, value) in fields {
        let rendered = if SECRET_FIELDS.contains(field.full_name()) {
            Json::String(STRIPPED.to_owned())
        } else if field.is_map() {
            let value_kind = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            };
            map_json(value, &value_kind)
        } else {
            value_json(value, &field.kind())
        };
        out.insert(field.name().to_owned(), rendered);
    }
    Json::Object(out)
}

fn map_json(value: &Value, value_kind: &Kind) -> Json {
    let Value::Map(map) = value else {
        return value_json(value, value_kind);
    };
    let mut entries: Vec<(String, &Value)> = map.iter().map(|(k, v)| (key_string(k), v)).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Json::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k, value_json(v, value_kind)))
            .collect(),
    )
}

fn key_string(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn value_json(value: &Value, kind: &Kind) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(n) => float_json(f64::from(*n)),
        Value::F64(n) => float_json(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => Json::String(v.name().to_owned()),
            None => Json::from(*n),
        },
        Value::Message(m) => message_json(m),
        Value::List(items) => Json::Array(items.iter().map(|v| value_json(v, kind)).collect()),
        Value::Map(_) => map_json(value, kind),
    }
}

fn float_json(n: f64) -> Json {
    // JSON has no NaN/Inf; null keeps the line parseable.
    serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
}

/// Go's `encoding/json` escapes these even inside strings; they can only
/// occur inside strings in serialized JSON, so a textual pass is exact.
fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::v1 as csi;
    use std::collections::HashMap;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn upstream_create_volume_vector() {
        let req = csi::CreateVolumeRequest {
            name: "test-volume".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1024,
                limit_bytes: 1024,
            }),
            parameters: map(&[("param1", "param1"), ("param2", "param2")]),
            secrets: map(&[("secret1", "secret1"), ("secret2", "secret2")]),
            volume_capabilities: vec![csi::VolumeCapability {
                access_mode: Some(csi::volume_capability::AccessMode {
                    mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
                }),
                access_type: Some(csi::volume_capability::AccessType::Mount(
                    csi::volume_capability::MountVolume {
                        fs_type: "ext4".into(),
                        mount_flags: vec!["flag1".into(), "flag2".into(), "flag3".into()],
                        ..Default::default()
                    },
                )),
            }],
            volume_content_source: Some(csi::VolumeContentSource::default()),
            accessibility_requirements: Some(csi::TopologyRequirement::default()),
            ..Default::default()
        };
        assert_eq!(
            strip_secrets_json(&req),
            r#"{"accessibility_requirements":{},"capacity_range":{"limit_bytes":1024,"required_bytes":1024},"name":"test-volume","parameters":{"param1":"param1","param2":"param2"},"secrets":"***stripped***","volume_capabilities":[{"access_mode":{"mode":"MULTI_NODE_MULTI_WRITER"},"mount":{"fs_type":"ext4","mount_flags":["flag1","flag2","flag3"]}}],"volume_content_source":{}}"#
        );
    }

    #[test]
    fn strips_other_request_secrets() {
        let stage = csi::NodeStageVolumeRequest {
            volume_id: "vol".into(),
            staging_target_path: "/staging".into(),
            secrets: map(&[("password", "hunter2")]),
            ..Default::default()
        };
        let json = strip_secrets_json(&stage);
        assert!(!json.contains("hunter2"), "{json}");
        assert_eq!(
            json,
            r#"{"secrets":"***stripped***","staging_target_path":"/staging","volume_id":"vol"}"#
        );

        let publish = csi::ControllerPublishVolumeRequest {
            volume_id: "vol".into(),
            node_id: "node".into(),
            readonly: true,
            secrets: map(&[("token", "s3cr3t")]),
            ..Default::default()
        };
        assert_eq!(
            strip_secrets_json(&publish),
            r#"{"node_id":"node","readonly":true,"secrets":"***stripped***","volume_id":"vol"}"#
        );
    }

    #[test]
    fn message_without_secrets_is_unchanged() {
        let resp = csi::ProbeResponse { ready: Some(true) };
        assert_eq!(strip_secrets_json(&resp), r#"{"ready":{"value":true}}"#);
        assert_eq!(strip_secrets_json(&csi::ProbeRequest {}), "{}");
        assert_eq!(
            strip_secrets_json(&csi::ProbeResponse { ready: Some(false) }),
            r#"{"ready":{}}"#
        );

        let info = csi::GetPluginInfoResponse {
            name: "a<b>&c".into(),
            vendor_version: "v1".into(),
            manifest: map(&[("z", "1"), ("a", "2")]),
        };
        assert_eq!(
            strip_secrets_json(&info),
            r#"{"manifest":{"a":"2","z":"1"},"name":"a\u003cb\u003e\u0026c","vendor_version":"v1"}"#
        );
    }

    #[test]
    fn unknown_enum_numbers_and_raw_input() {
        let caps = csi::ControllerGetCapabilitiesResponse {
            capabilities: vec![csi::ControllerServiceCapability {
                r#type: Some(csi::controller_service_capability::Type::Rpc(
                    csi::controller_service_capability::Rpc { r#type: 9999 },
                )),
            }],
        };
        assert_eq!(
            strip_secrets_json(&caps),
            r#"{"capabilities":[{"rpc":{"type":9999}}]}"#
        );
        assert_eq!(
            strip_secrets_encoded("pluginregistration.PluginInfo", b"\x12\x03abc"),
            r#"{"name":"abc"}"#
        );
        assert!(strip_secrets_encoded("no.such.Message", b"").starts_with("<<"));
        assert!(strip_secrets_encoded("csi.v1.ProbeRequest", b"\xff").starts_with("<<"));
    }

    #[test]
    fn secret_fields_come_from_proto_options() {
        let fields = secret_fields();
        assert!(fields.contains("csi.v1.CreateVolumeRequest.secrets"));
        assert!(fields.contains("csi.v1.NodeStageVolumeRequest.secrets"));
        assert!(fields.contains("csi.v1.ControllerPublishVolumeRequest.secrets"));
        assert!(!fields.contains("csi.v1.CreateVolumeRequest.parameters"));
        // 19 `[(csi_secret) = true]` options in csi.proto v1.12.0.
        assert_eq!(fields.len(), 19, "{fields:?}");
    }
}
