//! The proto3 JSON mapping for our messages, and conversions between
//! `google.protobuf.Struct` and `serde_json::Value`.
//!
//! prost generates no serde code, so the mapping goes through prost-reflect's
//! dynamic messages over [`FILE_DESCRIPTOR_SET`](crate::FILE_DESCRIPTOR_SET):
//! the output is exactly what grpcurl prints and accepts (enum names, `"1.5s"`
//! durations, RFC 3339 timestamps), which is what lets one plan file serve
//! both grpcurl and the CLI.

use std::sync::OnceLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use prost_types::{ListValue, Struct, Value, value::Kind};

/// Why a JSON document could not become a message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message type is not in the descriptor set (a build problem).
    #[error("message type {0} is not in the descriptor set")]
    UnknownType(String),
    /// The document is not valid JSON or does not fit the message.
    #[error("{0}")]
    Invalid(String),
}

/// The descriptor pool of the contract, decoded once.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled by build.rs decodes")
    })
}

fn dynamic<M: Name>() -> Result<prost_reflect::MessageDescriptor, JsonError> {
    let name = M::full_name();
    descriptor_pool()
        .get_message_by_name(&name)
        .ok_or(JsonError::UnknownType(name))
}

/// Renders a message as proto3 JSON (fields in camelCase, enums by name,
/// default values left out, as grpcurl prints them). A message proto3 JSON
/// cannot express (a `Duration` or `Timestamp` out of its range, which a
/// peer can send in binary) renders as `{"error": …}` saying so; see
/// [`try_to_json`] to handle that case.
pub fn to_json<M: Message + Name>(message: &M) -> serde_json::Value {
    try_to_json(message).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Renders a message as proto3 JSON, or says why it cannot be: a
/// `Duration` or `Timestamp` out of the range proto3 JSON allows (±10,000
/// years), which the binary encoding can carry.
pub fn try_to_json<M: Message + Name>(message: &M) -> Result<serde_json::Value, JsonError> {
    let descriptor = dynamic::<M>()?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    let options = SerializeOptions::new().skip_default_fields(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| JsonError::Invalid(e.to_string()))
}

/// Parses proto3 JSON (camelCase or original field names) into a message.
pub fn from_json<M: Message + Name + Default>(text: &str) -> Result<M, JsonError> {
    let descriptor = dynamic::<M>()?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| JsonError::Invalid(e.to_string()))
}

/// Converts a JSON value into a protobuf `Value`.
pub fn value_from_json(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        // Struct numbers are doubles; very large integers lose precision, as in
        // every proto3 JSON implementation.
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(value_from_json).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, value_from_json(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// Converts a JSON object into a protobuf `Struct`; anything else becomes a
/// `Struct` with the value under the key `value`.
pub fn struct_from_json(value: serde_json::Value) -> Struct {
    match value_from_json(value) {
        Value {
            kind: Some(Kind::StructValue(s)),
        } => s,
        other => Struct {
            fields: [("value".to_string(), other)].into_iter().collect(),
        },
    }
}

/// Converts a protobuf `Value` into JSON. Whole numbers come back as integers.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => list.values.iter().map(value_to_json).collect(),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// Converts a protobuf `Struct` into a JSON object.
pub fn struct_to_json(value: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{DispatchResponse, Plan, PlanStep, plan_step::Action};

    #[test]
    fn struct_round_trips_through_json() {
        let json = serde_json::json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}});
        assert_eq!(struct_to_json(&struct_from_json(json.clone())), json);
    }

    #[test]
    fn messages_use_the_proto3_json_mapping() {
        let response = DispatchResponse {
            command: "status".into(),
            correlation_id: "abc".into(),
            data: Some(struct_from_json(serde_json::json!({"mode": "IDLE"}))),
            ..Default::default()
        };
        assert_eq!(
            to_json(&response),
            serde_json::json!({"command": "status", "correlationId": "abc", "data": {"mode": "IDLE"}})
        );
    }

    #[test]
    fn plan_files_parse_with_enums_durations_and_oneofs() {
        let plan: Plan = from_json(
            r#"{"name": "hello", "layer": "LAYER_OVERRIDE",
                "steps": [{"id": "wait", "delay": {"duration": "1.5s"}}]}"#,
        )
        .unwrap();
        assert_eq!(plan.layer, crate::v1::Layer::Override as i32);
        let PlanStep {
            action: Some(Action::Delay(delay)),
            ..
        } = &plan.steps[0]
        else {
            panic!("expected a delay step, got {:?}", plan.steps[0]);
        };
        let duration = delay.duration.unwrap();
        assert_eq!((duration.seconds, duration.nanos), (1, 500_000_000));
    }

    #[test]
    fn bad_json_is_an_error_that_names_the_problem() {
        let err = from_json::<Plan>(r#"{"layer": "LAYER_SIDEWAYS"}"#).unwrap_err();
        assert!(err.to_string().contains("LAYER_SIDEWAYS"), "{err}");
    }
}
