//! Checks against the OpenAPI document: a delivered request against its `webhooks` entry.

use serde_json::{Value, json};

use crate::Received;

/// Validates `instance` against `schema`, which may `$ref` into the document's components.
pub fn check(document: &Value, schema: &Value, instance: &Value, what: &str) -> Result<(), String> {
    let mut root = schema.clone();
    root["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&root)
        .map_err(|e| format!("the schema for {what} does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what} does not match the document: {errors:?}\n{instance}"
        ))
    }
}

/// Checks a delivered request against the `webhooks` entry `name`: body and headers.
pub fn check_webhook(document: &Value, name: &str, request: &Received) -> Result<(), String> {
    let operation = &document["webhooks"][name]["post"];
    if !operation.is_object() {
        return Err(format!("no webhook `{name}` in the document"));
    }
    let body_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| e.to_string())?;
    check(document, body_schema, &body, &format!("the {name} body"))?;
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if parameters.len() < 4 {
        return Err(format!("too few headers documented: {parameters:?}"));
    }
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or("");
        let value = request.header(name);
        if value.is_empty() {
            return Err(format!("header {name} is missing"));
        }
        check(
            document,
            &parameter["schema"],
            &json!(value),
            &format!("header {name}"),
        )?;
    }
    Ok(())
}
