use std::path::Path;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

/// Validators for the codex 0.169 schema files the tests check messages against.
pub struct Schemas {
    response: Validator,
    error: Validator,
    notification: Validator,
    server_request: Validator,
    initialize_response: Validator,
}

fn load(name: &str) -> Validator {
    validator_at(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/codex-0.169")
            .join(name),
    )
}

fn validator_at(path: &Path) -> Validator {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

impl Schemas {
    /// Loaded once per test process.
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| Schemas {
            response: load("JSONRPCResponse.json"),
            error: load("JSONRPCError.json"),
            notification: load("ServerNotification.json"),
            server_request: load("ServerRequest.json"),
            initialize_response: load("v1/InitializeResponse.json"),
        })
    }

    /// Panics unless `message` is valid. `method` is the method of the request it answers, when
    /// it is a response.
    pub fn check(&self, message: &Value, method: Option<&str>) {
        let object = message
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {message}"));
        assert!(
            !object.contains_key("jsonrpc"),
            "tether never sends \"jsonrpc\": {message}"
        );
        let validator = if object.contains_key("error") {
            &self.error
        } else if object.contains_key("result") {
            &self.response
        } else if object.contains_key("id") {
            &self.server_request
        } else {
            &self.notification
        };
        Self::expect_valid(validator, message);
        if method == Some("initialize") && object.contains_key("result") {
            Self::expect_valid(&self.initialize_response, &message["result"]);
        }
    }

    /// Panics unless `instance` is valid under the schema file at `path`.
    pub fn check_file(path: &Path, instance: &Value) {
        Self::expect_valid(&validator_at(path), instance);
    }

    fn expect_valid(validator: &Validator, instance: &Value) {
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "schema violation in {instance}: {errors:?}"
        );
    }
}
