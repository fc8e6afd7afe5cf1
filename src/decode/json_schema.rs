//! Checking JSON Schema messages against their schema (`validate = true` on a json-schema
//! route), as Confluent's deserializer does with `json.fail.invalid.schema`.
//!
//! Each schema id is compiled once, with the schemas it references as the registry serves
//! them; nothing is fetched from anywhere else (a `$ref` to an address the registry did not
//! list is the schema's error, and its messages are dead-lettered with it). `format` is
//! checked too (date-time, email, uuid...), as Confluent's validator does.
//!
//! A document that fails is refused before its row is built, with the first violation: where
//! in the document (a JSON pointer) and why, so a dead letter says which field and what the
//! schema wanted. The columns' own checks still run on documents that pass.

use std::sync::Arc;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

use super::json::RowError;

/// The longest reason kept: a violation's text quotes the offending value, which may be a
/// whole object.
const MAX_REASON: usize = 300;

/// A compiled JSON Schema.
#[derive(Clone)]
pub struct Checker(Arc<Validator>);

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checker")
    }
}

/// Serves the references the registry listed for a schema, by the name the schema's `$ref`
/// uses (relative to the schema, or a full address).
struct References(Vec<(String, Value)>);

impl Retrieve for References {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let asked = uri.as_str();
        self.0
            .iter()
            .find(|(name, _)| {
                asked == name
                    || asked
                        .strip_suffix(name.as_str())
                        .is_some_and(|base| base.ends_with('/'))
            })
            .map(|(_, schema)| schema.clone())
            .ok_or_else(|| format!("{asked} is not among the schema's registry references").into())
    }
}

impl Checker {
    /// Compiles `schema` (already parsed) with its `references` (name, text); the error is
    /// why messages of this schema cannot be checked.
    pub fn new(schema: &Value, references: &[(String, String)]) -> Result<Checker, String> {
        let mut refs = Vec::with_capacity(references.len());
        for (name, text) in references {
            let parsed = serde_json::from_str(text)
                .map_err(|e| format!("reference {name:?} is not JSON: {e}"))?;
            refs.push((name.clone(), parsed));
        }
        jsonschema::options()
            .should_validate_formats(true)
            .with_retriever(References(refs))
            .build(schema)
            .map(|v| Checker(Arc::new(v)))
            .map_err(|e| format!("cannot compile the JSON Schema: {}", short(&e.to_string())))
    }

    /// Checks the JSON document `doc`. A document that is not JSON passes: reading it as a
    /// row then fails with the byte where it breaks, which says more.
    pub fn check(&self, doc: &[u8]) -> Result<(), RowError> {
        let Ok(value) = sonic_rs::from_slice::<Value>(doc) else {
            return Ok(());
        };
        if self.0.is_valid(&value) {
            return Ok(());
        }
        let mut errors = self.0.iter_errors(&value);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let path = first.instance_path().to_string();
        Err(RowError::SchemaViolation {
            at: if path.is_empty() {
                "the document".to_string()
            } else {
                format!("\"{path}\"")
            },
            reason: short(&first.to_string()),
            more: errors.count(),
        })
    }
}

/// `s` cut at [`MAX_REASON`] bytes (on a character boundary), with an ellipsis.
fn short(s: &str) -> String {
    if s.len() <= MAX_REASON {
        return s.to_string();
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(schema: &str) -> Checker {
        Checker::new(&serde_json::from_str(schema).unwrap(), &[]).unwrap()
    }

    const ORDER: &str = r#"{
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "email": {"type": "string", "format": "email"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["id"]
    }"#;

    #[test]
    fn a_document_that_fails_names_where_and_why() {
        let c = checker(ORDER);
        assert!(c
            .check(br#"{"id": 3, "email": "a@b.example", "tags": ["x"]}"#)
            .is_ok());
        let e = c.check(br#"{"id": -1}"#).unwrap_err().to_string();
        assert_eq!(
            e,
            "fails its JSON Schema at \"/id\": -1 is less than the minimum of 0"
        );
        let e = c
            .check(br#"{"email": "a@b.example"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "fails its JSON Schema at the document: \"id\" is a required property"
        );
        let e = c
            .check(br#"{"id": 1, "tags": ["x", 2]}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "fails its JSON Schema at \"/tags/1\": 2 is not of type \"string\""
        );
        // Formats are checked, and every further violation is counted.
        let e = c
            .check(br#"{"id": "1", "email": "nope"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("(and 1 more violation)"), "{e}");
        assert!(
            e.contains("\"/id\": \"1\" is not of type \"integer\"")
                || e.contains("\"/email\": \"nope\" is not a \"email\""),
            "{e}"
        );
        let e = c
            .check(br#"{"id": 1, "email": "nope"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"/email\""), "{e}");
    }

    #[test]
    fn text_that_is_not_json_is_left_to_the_row_reader() {
        assert!(checker(ORDER).check(b"{\"id\": ").is_ok());
    }

    #[test]
    fn a_long_reason_is_cut() {
        let c = checker(r#"{"type": "object", "properties": {"s": {"maxLength": 3}}}"#);
        let long = format!(r#"{{"s": "{}"}}"#, "é".repeat(400));
        let e = c.check(long.as_bytes()).unwrap_err().to_string();
        assert!(e.len() < MAX_REASON + 100, "{e}");
        assert!(e.ends_with("..."), "{e}");
    }

    #[test]
    fn references_come_from_the_registry_only() {
        let schema: Value = serde_json::from_str(
            r#"{"type": "object", "properties": {"ship": {"$ref": "address.json"}}}"#,
        )
        .unwrap();
        let address = r#"{"type": "object", "required": ["city"]}"#;
        let c = Checker::new(&schema, &[("address.json".into(), address.into())]).unwrap();
        assert!(c.check(br#"{"ship": {"city": "C"}}"#).is_ok());
        let e = c.check(br#"{"ship": {}}"#).unwrap_err().to_string();
        assert!(
            e.contains("\"/ship\": \"city\" is a required property"),
            "{e}"
        );
        // Without it, the schema cannot be compiled: nothing is fetched from elsewhere.
        let e = Checker::new(&schema, &[]).unwrap_err();
        assert!(e.contains("address.json"), "{e}");
        let e = Checker::new(&schema, &[("address.json".into(), "{".into())]).unwrap_err();
        assert!(e.contains("reference \"address.json\" is not JSON"), "{e}");
    }
}
