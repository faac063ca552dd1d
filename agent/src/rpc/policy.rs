//! The policy check every AgentService request goes through before its handler acts.
//!
//! [`guard`] wraps each method of the service: the request is decoded with the method's
//! own message type (found in the protocol's descriptors, so a method added later is
//! covered without a line here), turned into the JSON form Kata's agent gives its policy
//! ([`input`]), and checked against the [`PolicyGate`] under the rule named after the
//! message. A denied request gets `PERMISSION_DENIED` and its handler never runs.
//!
//! Two methods differ, as in Kata's agent: `SetPolicy` is checked by its own handler,
//! under the same lock that replaces the policy ([`PolicyGate::replace`]), and
//! `ReadStdout`/`ReadStderr` are not refused: the output is read and, when the policy
//! denies `ReadStreamRequest`, answered empty (the logs are redacted).
//!
//! While no policy is loaded nothing is decoded or evaluated: the cost is one lock. An
//! agent built without the policy engine has no check at all ([`guard`] is not installed,
//! so neither the descriptors nor the JSON conversion are linked in) and answers
//! `SetPolicy` UNIMPLEMENTED ([`set_policy`]).

use std::sync::Arc;

use async_trait::async_trait;
use protobuf::MessageDyn;
use protobuf::reflect::{
    FieldDescriptor, MessageDescriptor, ReflectFieldRef, ReflectValueRef, RuntimeFieldType,
    RuntimeType,
};
use serde_json::{Map, Value};
use ttrpc::asynchronous::{MethodHandler, Service, TtrpcContext};
use ttrpc::{Code, Request, Response};

use hull_protocols::agent::SetPolicyRequest;

use super::status::status;
use crate::error::AgentError;
use crate::policy::{ENGINE_BUILT_IN, PolicyError, PolicyGate};

/// The method that checks the policy itself, atomically with replacing it.
const SET_POLICY_METHOD: &str = "SetPolicy";
/// The request whose denial redacts output instead of refusing.
const READ_STREAM_REQUEST: &str = "ReadStreamRequest";
/// The request Kata pre-processes for its policy.
const COPY_FILE_REQUEST: &str = "CopyFileRequest";

/// Puts the policy check in front of every method of `service` (`grpc.AgentService`)
/// but `SetPolicy`.
pub fn guard(service: &mut Service, policy: &Arc<PolicyGate>) {
    let inputs = request_types();
    let methods = std::mem::take(&mut service.methods);
    service.methods = methods
        .into_iter()
        .map(|(method, inner)| {
            let request_type = inputs
                .iter()
                .find(|(name, _)| *name == method)
                .map(|(_, descriptor)| descriptor.clone());
            let handler: Box<dyn MethodHandler + Send + Sync> = match request_type {
                Some(request_type) if method != SET_POLICY_METHOD => Box::new(Checked {
                    request_type,
                    inner,
                    policy: policy.clone(),
                }),
                _ => inner,
            };
            (method, handler)
        })
        .collect();
}

/// `SetPolicy`: checked by the policy in force and the policy replaced, under one lock
/// ([`PolicyGate::replace`]). Without the engine: UNIMPLEMENTED naming the method and the
/// agent that has it, the request not even converted.
pub fn set_policy(gate: &PolicyGate, req: &SetPolicyRequest) -> Result<(), AgentError> {
    if !ENGINE_BUILT_IN {
        return Err(PolicyError::SetPolicyNotBuiltIn.into());
    }
    let input = input(req)?;
    gate.replace(&input, &req.policy)?;
    Ok(())
}

/// Each AgentService method with its request's message type.
fn request_types() -> Vec<(String, MessageDescriptor)> {
    hull_protocols::agent::file_descriptor()
        .services()
        .flat_map(|service| {
            service
                .methods()
                .map(|m| (m.proto().name().to_string(), m.input_type()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One method behind the policy.
struct Checked {
    request_type: MessageDescriptor,
    inner: Box<dyn MethodHandler + Send + Sync>,
    policy: Arc<PolicyGate>,
}

#[async_trait]
impl MethodHandler for Checked {
    async fn handler(&self, ctx: TtrpcContext, req: Request) -> ttrpc::Result<Response> {
        if !self.policy.is_enforcing() {
            return self.inner.handler(ctx, req).await;
        }
        // Undecodable: the method's own handler answers INVALID_ARGUMENT, having done
        // nothing.
        let Ok(message) = self.request_type.parse_from_bytes(&req.payload) else {
            return self.inner.handler(ctx, req).await;
        };
        let entry = self.request_type.name();
        let decision = input(message.as_ref())
            .and_then(|input| self.policy.check(entry, &input))
            .map_err(AgentError::from);
        match decision {
            Ok(()) => self.inner.handler(ctx, req).await,
            Err(AgentError::Policy(PolicyError::Denied { .. })) if entry == READ_STREAM_REQUEST => {
                let mut response = self.inner.handler(ctx, req).await?;
                let ok = response
                    .status
                    .as_ref()
                    .is_none_or(|s| s.code.value() == Code::OK as i32);
                if ok {
                    // An empty ReadStreamResponse: no data.
                    response.payload.clear();
                }
                Ok(response)
            }
            Err(error) => {
                let mut response = Response::new();
                if let ttrpc::Error::RpcStatus(s) = status(error) {
                    response.set_status(s);
                }
                Ok(response)
            }
        }
    }
}

/// The request as Kata's agent shows it to the policy: the JSON serde makes of the
/// generated Rust message. Fields by their Rust names (`type` is `type_`), enums as
/// numbers, an unset message field as `null`, bytes as arrays of numbers, a `oneof` as
/// `{"field": value}` under its own name. `CopyFileRequest` is pre-processed as Kata's
/// agent does: its file type and symlink target spelled out, its data left out.
pub fn input(message: &dyn MessageDyn) -> Result<Value, PolicyError> {
    let descriptor = message.descriptor_dyn();
    if descriptor.name() == COPY_FILE_REQUEST {
        return copy_file_input(message, &descriptor);
    }
    Ok(message_value(message))
}

fn message_value(message: &dyn MessageDyn) -> Value {
    let descriptor = message.descriptor_dyn();
    let mut object = Map::new();
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof() {
            // A real oneof: one key for the group, written once, at its first field.
            if oneof.fields().next().is_some_and(|first| first == field) {
                let set = oneof.fields().find_map(|f| {
                    f.get_singular(message)
                        .map(|v| (rust_name(f.name()), value(&v)))
                });
                let group = set.map_or(Value::Null, |(name, v)| {
                    Value::Object(Map::from_iter([(name, v)]))
                });
                object.insert(oneof.name().to_string(), group);
            }
            continue;
        }
        object.insert(rust_name(field.name()), field_value(&field, message));
    }
    Value::Object(object)
}

fn field_value(field: &FieldDescriptor, message: &dyn MessageDyn) -> Value {
    match field.get_reflect(message) {
        ReflectFieldRef::Optional(optional) => match optional.value() {
            Some(v) => value(&v),
            // proto3 `optional` scalars and message fields are Options: null when unset;
            // plain proto3 scalars are their default.
            None if field.containing_oneof_including_synthetic().is_some() => Value::Null,
            None => match field.runtime_field_type() {
                RuntimeFieldType::Singular(RuntimeType::Message(_)) => Value::Null,
                _ => value(&field.singular_default_value()),
            },
        },
        ReflectFieldRef::Repeated(items) => {
            Value::Array(items.into_iter().map(|v| value(&v)).collect())
        }
        ReflectFieldRef::Map(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (map_key(&k), value(&v)))
                .collect(),
        ),
    }
}

fn value(v: &ReflectValueRef<'_>) -> Value {
    match v {
        ReflectValueRef::U32(n) => Value::from(*n),
        ReflectValueRef::U64(n) => Value::from(*n),
        ReflectValueRef::I32(n) => Value::from(*n),
        ReflectValueRef::I64(n) => Value::from(*n),
        ReflectValueRef::F32(n) => Value::from(*n),
        ReflectValueRef::F64(n) => Value::from(*n),
        ReflectValueRef::Bool(b) => Value::Bool(*b),
        ReflectValueRef::String(s) => Value::String((*s).to_string()),
        ReflectValueRef::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        ReflectValueRef::Enum(_, n) => Value::from(*n),
        ReflectValueRef::Message(m) => message_value(&**m),
    }
}

/// serde_json writes a map's keys as strings.
fn map_key(k: &ReflectValueRef<'_>) -> String {
    match k {
        ReflectValueRef::String(s) => (*s).to_string(),
        other => match value(other) {
            Value::String(s) => s,
            v => v.to_string(),
        },
    }
}

/// rust-protobuf names a field that is a Rust keyword with a trailing `_`.
fn rust_name(proto_name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else",
        "enum", "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match",
        "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "super", "trait", "true",
        "try", "type", "unsafe", "use", "where", "while", "yield", "abstract", "become", "do",
        "final", "macro", "override", "priv", "typeof", "unsized", "virtual",
    ];
    if KEYWORDS.contains(&proto_name) {
        format!("{proto_name}_")
    } else {
        proto_name.to_string()
    }
}

/// Kata's policy form of `CopyFileRequest`.
fn copy_file_input(
    message: &dyn MessageDyn,
    descriptor: &MessageDescriptor,
) -> Result<Value, PolicyError> {
    let get = |name: &str| {
        descriptor
            .field_by_name(name)
            .map(|f| f.get_singular_field_or_default(message))
    };
    let number = |name: &str| get(name).map_or(Value::from(0), |v| value(&v));
    let file_mode = match get("file_mode") {
        Some(ReflectValueRef::U32(mode)) => mode,
        _ => 0,
    };
    let file_type = match file_mode & libc::S_IFMT {
        libc::S_IFREG => "Regular",
        libc::S_IFDIR => "Directory",
        libc::S_IFLNK => "Symlink",
        _ => "Unknown",
    };
    let symlink_target = if file_type == "Symlink" {
        let data = match get("data") {
            Some(ReflectValueRef::Bytes(data)) => data,
            _ => &[][..],
        };
        let target = std::str::from_utf8(data).map_err(|_| PolicyError::Input {
            request: COPY_FILE_REQUEST.into(),
            reason: "the symlink target is not UTF-8".into(),
        })?;
        Value::String(target.to_string())
    } else {
        Value::Null
    };
    Ok(serde_json::json!({
        "path": get("path").map_or(Value::from(""), |v| value(&v)),
        "file_type": file_type,
        "symlink_target": symlink_target,
        "file_size": number("file_size"),
        "file_mode": file_mode,
        "dir_mode": number("dir_mode"),
        "uid": number("uid"),
        "gid": number("gid"),
        "offset": number("offset"),
    }))
}

#[cfg(test)]
mod tests;
