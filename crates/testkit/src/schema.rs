use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::Validator;
use serde_json::Value;

/// Validators for the codex 0.169 schema files the tests check messages against: the envelopes,
/// the notification and server-request unions (each branch pins its method, so a message is
/// checked against its own method's params), and one response schema per request method.
/// tether's own methods, which codex does not have, are checked against the schema tether
/// generates for them.
pub struct Schemas {
    error: Validator,
    notification: Validator,
    server_request: Validator,
    /// Method name → the codex type of its params, from `ClientRequest.json`.
    params_types: HashMap<String, String>,
    responses: Mutex<HashMap<String, Arc<Validator>>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/codex-0.169")
}

fn load(name: &str) -> Validator {
    validator_at(&fixtures().join(name))
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn validator_at(path: &Path) -> Validator {
    validator_of(&read_json(path), &path.display().to_string())
}

fn validator_of(schema: &Value, name: &str) -> Validator {
    jsonschema::validator_for(schema).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// Response types whose names do not follow `<X>Params` → `<X>Response`.
const RESPONSE_TYPES: &[(&str, &str)] = &[
    ("account/logout", "LogoutAccountResponse"),
    ("account/rateLimits/read", "GetAccountRateLimitsResponse"),
    ("config/value/write", "ConfigWriteResponse"),
    ("config/batchWrite", "ConfigWriteResponse"),
    ("configRequirements/read", "ConfigRequirementsReadResponse"),
];

impl Schemas {
    /// Loaded once per test process.
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| Schemas {
            error: load("JSONRPCError.json"),
            notification: load("ServerNotification.json"),
            server_request: load("ServerRequest.json"),
            params_types: params_types(),
            responses: Mutex::new(HashMap::new()),
        })
    }

    /// Panics unless `message` is valid. `method` is the method of the request it answers, when
    /// it is a response; a response to a request of unknown method fails.
    pub fn check(&self, message: &Value, method: Option<&str>) {
        let object = message
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {message}"));
        assert!(
            !object.contains_key("jsonrpc"),
            "tether never sends \"jsonrpc\": {message}"
        );
        if object.contains_key("error") {
            Self::expect_valid(&self.error, message);
        } else if let Some(result) = object.get("result") {
            let method = method
                .unwrap_or_else(|| panic!("a response to no request this client sent: {message}"));
            assert!(
                matches!(object.get("id"), Some(Value::String(_) | Value::Number(_))),
                "a response needs a string or integer id: {message}"
            );
            Self::expect_valid(&self.response(method), result);
        } else if object.contains_key("id") {
            Self::expect_valid(&self.server_request, message);
        } else {
            Self::expect_valid(&self.notification, message);
        }
    }

    /// The validator of `method`'s result.
    pub fn response(&self, method: &str) -> Arc<Validator> {
        let mut responses = self.responses.lock().unwrap();
        let validator = responses
            .entry(method.to_owned())
            .or_insert_with(|| Arc::new(self.load_response(method)));
        Arc::clone(validator)
    }

    fn load_response(&self, method: &str) -> Validator {
        if let Some(params) = self.params_types.get(method) {
            let name = RESPONSE_TYPES
                .iter()
                .find(|(m, _)| *m == method)
                .map(|(_, name)| (*name).to_owned())
                .unwrap_or_else(|| params.replace("Params", "Response"));
            for dir in ["v2", "v1", "."] {
                let path = fixtures().join(dir).join(format!("{name}.json"));
                if path.exists() {
                    return validator_at(&path);
                }
            }
            panic!("no codex schema for the response of {method} ({name})");
        }
        let spec = tether_protocol::CLIENT_METHODS
            .iter()
            .find(|spec| spec.name == method)
            .unwrap_or_else(|| panic!("{method} is neither a codex method nor one of tether's"));
        let file = format!("v2/{}Response.json", spec.stem);
        let (_, schema) = tether_protocol::schemas()
            .into_iter()
            .find(|(name, _)| *name == file)
            .unwrap_or_else(|| panic!("tether exports no {file}"));
        validator_of(&schema, &file)
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

/// Method → params type name, from the codex request union.
fn params_types() -> HashMap<String, String> {
    let union = read_json(&fixtures().join("ClientRequest.json"));
    let mut types = HashMap::new();
    for branch in union["oneOf"]
        .as_array()
        .expect("ClientRequest.json is a union")
    {
        let Some(method) = branch["properties"]["method"]["enum"][0].as_str() else {
            continue;
        };
        let params = branch["properties"]["params"]["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or("");
        types.insert(method.to_owned(), params.to_owned());
    }
    types
}
