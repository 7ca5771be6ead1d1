//! Kea's command envelope: the request `{"command", "service", "arguments"}` and the answer
//! `[{"result", "text", "arguments"}]`, with the result codes Kea's control agent uses.
//!
//! A Kea user's scripts, `kea-shell` and kea-exporter read answers by these names and codes,
//! so they are kept exactly; see docs/CONTROL.md for the commands.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A command as Kea's control agent takes it in the body of `POST /`.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    pub(crate) command: String,
    /// The Kea daemons the command is for (`dhcp4`, `dhcp6`); lessor is both, so it is only
    /// checked for names it does not serve.
    #[serde(default)]
    pub(crate) service: Vec<String>,
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

/// Kea's result codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    Success = 0,
    Error = 1,
    Unsupported = 2,
    /// The command worked and found nothing (Kea's "empty").
    Empty = 3,
    /// The change conflicts with the server's state (another client's lease).
    Conflict = 4,
}

/// One answer, as Kea puts it in the list it returns.
#[derive(Debug, Serialize)]
pub(crate) struct Answer {
    pub(crate) result: u8,
    /// Omitted when empty, as Kea omits it from `status-get`, `list-commands` and statistics.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) arguments: Option<Value>,
}

impl Answer {
    /// An answer with no arguments.
    pub(crate) fn new(code: Code, text: impl Into<String>) -> Answer {
        Answer {
            result: code as u8,
            text: text.into(),
            arguments: None,
        }
    }

    /// A successful answer carrying `arguments`.
    pub(crate) fn with(code: Code, text: impl Into<String>, arguments: Value) -> Answer {
        Answer {
            arguments: Some(arguments),
            ..Answer::new(code, text)
        }
    }

    /// A bad request: result 1 and why.
    pub(crate) fn error(text: impl Into<String>) -> Answer {
        Answer::new(Code::Error, text)
    }
}

/// A command's arguments, read with errors that name the argument and what was wanted.
#[derive(Debug)]
pub(crate) struct Args<'a> {
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Args<'a> {
    /// The request's `arguments`, which must be a map when present.
    pub(crate) fn of(request: &'a Request) -> Result<Args<'a>, Answer> {
        match &request.arguments {
            None | Some(Value::Null) => Ok(Args { map: None }),
            Some(Value::Object(map)) => Ok(Args { map: Some(map) }),
            Some(_) => Err(Answer::error("'arguments' must be a map")),
        }
    }

    /// The raw value of `key`, if given.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key))
    }

    /// A string argument, if given.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, Answer> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A non-negative integer argument no larger than `max`, if given.
    pub(crate) fn uint(&self, key: &str, max: u64) -> Result<Option<u64>, Answer> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(Answer::error(format!(
                    "'{key}' must be an integer from 0 to {max}, not {n}"
                ))),
            },
            Some(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    /// A list of non-negative integers, if given.
    pub(crate) fn uints(&self, key: &str, max: u64) -> Result<Option<Vec<u64>>, Answer> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v.as_u64() {
                    Some(n) if n <= max => Ok(n),
                    _ => Err(Answer::error(format!(
                        "'{key}' must list integers from 0 to {max}, not {v}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "a list", other)),
        }
    }

    /// A required string argument.
    pub(crate) fn need_str(&self, key: &str) -> Result<&'a str, Answer> {
        self.str(key)?
            .ok_or_else(|| Answer::error(format!("missing '{key}' argument")))
    }
}

fn wrong_type(key: &str, wanted: &str, got: &Value) -> Answer {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    };
    Answer::error(format!("'{key}' must be {wanted}, not {got}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Answer, Args, Code, Request};

    fn request(v: serde_json::Value) -> Request {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_answer_serialises_as_kea_writes_it() {
        let a = Answer::with(Code::Empty, "0 IPv4 lease(s) found.", json!({"leases": []}));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"result": 3, "text": "0 IPv4 lease(s) found.", "arguments": {"leases": []}})
        );
        let a = Answer::new(Code::Unsupported, "'x' command not supported.");
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"result": 2, "text": "'x' command not supported."})
        );
    }

    #[test]
    fn a_wrong_argument_type_names_the_argument_and_the_types() {
        let r = request(json!({"command": "lease4-get", "arguments": {"ip-address": 7}}));
        let args = Args::of(&r).unwrap();
        let err = args.str("ip-address").unwrap_err();
        assert_eq!(err.result, 1);
        assert_eq!(err.text, "'ip-address' must be a string, not a number");
        let err = Args::of(&request(json!({"command": "x", "arguments": [1]}))).unwrap_err();
        assert_eq!(err.text, "'arguments' must be a map");
    }

    #[test]
    fn integers_are_checked_against_their_range() {
        let r = request(json!({"command": "x", "arguments": {"limit": -1, "subnets": [1, "a"]}}));
        let args = Args::of(&r).unwrap();
        assert_eq!(
            args.uint("limit", 100).unwrap_err().text,
            "'limit' must be an integer from 0 to 100, not -1"
        );
        assert_eq!(
            args.uints("subnets", 10).unwrap_err().text,
            "'subnets' must list integers from 0 to 10, not \"a\""
        );
        assert_eq!(args.uint("absent", 1).unwrap(), None);
    }
}
