//! The part of JSON Patch (RFC 6902) that policies use to change their state: `add`,
//! `remove` and `replace`, with RFC 6901 pointers.

use serde_json::Value;

/// Why a patch did not apply.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch is not an array of operations with `op` and `path`.
    #[error("malformed patch operation: {0}")]
    Malformed(String),
    /// An operation other than add, remove, replace.
    #[error("unsupported patch operation {0:?}")]
    Unsupported(String),
    /// The path names nothing the operation can act on.
    #[error("patch path {0:?} does not exist")]
    NoSuchPath(String),
}

/// Applies `ops` (a JSON array of operations) to `doc`, all or nothing.
pub fn apply(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| PatchError::Malformed("the operations are not an array".into()))?;
    let mut patched = doc.clone();
    for op in ops {
        apply_one(&mut patched, op)?;
    }
    *doc = patched;
    Ok(())
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let field = |name: &str| {
        op.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed(format!("no string {name:?} in {op}")))
    };
    let (kind, path) = (field("op")?, field("path")?);
    let no_path = || PatchError::NoSuchPath(path.to_string());
    let tokens = pointer_tokens(path).ok_or_else(no_path)?;
    let Some((last, parents)) = tokens.split_last() else {
        // The whole document.
        return match kind {
            "add" | "replace" => {
                *doc = value_of(op)?;
                Ok(())
            }
            "remove" => Err(no_path()),
            other => Err(PatchError::Unsupported(other.into())),
        };
    };
    let mut parent = &mut *doc;
    for token in parents {
        parent = match parent {
            Value::Object(map) => map.get_mut(token.as_str()),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(no_path)?;
    }
    match (kind, parent) {
        ("add", Value::Object(map)) => {
            map.insert(last.clone(), value_of(op)?);
        }
        ("add", Value::Array(items)) => {
            let value = value_of(op)?;
            if last == "-" {
                items.push(value);
            } else {
                let i = last.parse::<usize>().ok().filter(|i| *i <= items.len());
                items.insert(i.ok_or_else(no_path)?, value);
            }
        }
        ("remove", Value::Object(map)) => {
            map.remove(last.as_str()).ok_or_else(no_path)?;
        }
        ("remove", Value::Array(items)) => {
            let i = last.parse::<usize>().ok().filter(|i| *i < items.len());
            items.remove(i.ok_or_else(no_path)?);
        }
        ("replace", Value::Object(map)) => {
            *map.get_mut(last.as_str()).ok_or_else(no_path)? = value_of(op)?;
        }
        ("replace", Value::Array(items)) => {
            let slot = last.parse::<usize>().ok().and_then(|i| items.get_mut(i));
            *slot.ok_or_else(no_path)? = value_of(op)?;
        }
        ("add" | "remove" | "replace", _) => return Err(no_path()),
        (other, _) => return Err(PatchError::Unsupported(other.into())),
    }
    Ok(())
}

fn value_of(op: &Value) -> Result<Value, PatchError> {
    op.get("value")
        .cloned()
        .ok_or_else(|| PatchError::Malformed(format!("no \"value\" in {op}")))
}

/// `/a/b~1c` → `["a", "b/c"]`; `""` → `[]`; `None` for a path not starting with `/`.
fn pointer_tokens(path: &str) -> Option<Vec<String>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    let rest = path.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn add_remove_replace_on_objects_and_arrays() {
        let mut doc = json!({"pstate": {}});
        let ops = json!([
            {"op": "add", "path": "/pstate/sandbox_name", "value": "pod1"},
            {"op": "add", "path": "/pstate/a~1b", "value": [1]},
            {"op": "add", "path": "/pstate/a~1b/-", "value": 2},
            {"op": "replace", "path": "/pstate/a~1b/0", "value": 0},
        ]);
        apply(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"pstate": {"sandbox_name": "pod1", "a/b": [0, 2]}})
        );
        apply(
            &mut doc,
            &json!([{"op": "remove", "path": "/pstate/sandbox_name"}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"pstate": {"a/b": [0, 2]}}));
    }

    #[test]
    fn a_failing_operation_changes_nothing() {
        let mut doc = json!({"pstate": {"x": 1}});
        let ops = json!([
            {"op": "remove", "path": "/pstate/x"},
            {"op": "remove", "path": "/pstate/missing"},
        ]);
        assert!(matches!(
            apply(&mut doc, &ops),
            Err(PatchError::NoSuchPath(_))
        ));
        assert_eq!(doc, json!({"pstate": {"x": 1}}));
        let move_op = json!([{"op": "move", "from": "/a", "path": "/b"}]);
        assert!(matches!(
            apply(&mut doc, &move_op),
            Err(PatchError::Unsupported(_))
        ));
    }
}
