//! `control:`: where the control server listens and who may use it.

use std::net::{Ipv4Addr, SocketAddr};

use super::error::{ConfigError, invalid};
use super::wire::Value;

/// The control server's default address: loopback only.
pub const DEFAULT_CONTROL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8067);

/// `control:` when it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// The TCP address it listens on.
    pub listen: SocketAddr,
    /// HTTP basic credentials `(user, password)`; always set when `listen` is not loopback.
    pub credentials: Option<(String, String)>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: DEFAULT_CONTROL,
            credentials: None,
        }
    }
}

/// Builds `control` from its wire value: `off`, or a map of `listen`, `user`, `password`.
pub(super) fn control(value: Option<Value>) -> Result<Option<ControlConfig>, ConfigError> {
    let entries = match value {
        None => return Ok(Some(ControlConfig::default())),
        // `off` reads as false under YAML 1.1 rules and as a string under 1.2.
        Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Str(s)) if s == "off" => return Ok(None),
        Some(Value::Map(entries)) => entries,
        Some(other) => {
            return Err(invalid(
                "control",
                format!(
                    "must be off or a map of listen, user and password, not {}",
                    other.describe()
                ),
            ));
        }
    };
    let mut c = ControlConfig::default();
    let (mut user, mut password) = (None, None);
    for (key, v) in entries {
        let path = format!("control.{key}");
        let Value::Str(text) = v else {
            return Err(invalid(path, format!("must be text, not {}", v.describe())));
        };
        match key.as_str() {
            "listen" => {
                c.listen = text.parse().map_err(|_| {
                    invalid(
                        &path,
                        format!("must be ADDRESS:PORT (127.0.0.1:8067, [::1]:8067), not {text:?}"),
                    )
                })?;
            }
            "user" | "password" if text.is_empty() => {
                return Err(invalid(path, "must not be empty"));
            }
            "user" => user = Some(text),
            "password" => password = Some(text),
            _ => {
                return Err(invalid(
                    path,
                    "unknown key (control takes listen, user and password)",
                ));
            }
        }
    }
    c.credentials = match (user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("control.password", "missing: user needs it")),
        (None, Some(_)) => return Err(invalid("control.user", "missing: password needs it")),
    };
    if c.credentials.is_none() && !c.listen.ip().is_loopback() {
        return Err(invalid(
            "control.user",
            format!(
                "required (with control.password) when control.listen ({}) is not a loopback \
                 address: anyone who reaches it could change leases",
                c.listen
            ),
        ));
    }
    Ok(Some(c))
}

/// `control` as the effective config writes it back.
pub(super) fn to_wire(c: Option<&ControlConfig>) -> Value {
    let Some(c) = c else {
        return Value::Str("off".into());
    };
    let mut entries = vec![("listen".to_owned(), Value::Str(c.listen.to_string()))];
    if let Some((user, password)) = &c.credentials {
        entries.push(("user".to_owned(), Value::Str(user.clone())));
        entries.push(("password".to_owned(), Value::Str(password.clone())));
    }
    Value::Map(entries)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(yaml: &str) -> String {
        Config::from_yaml_str(yaml).unwrap_err().to_string()
    }

    #[test]
    fn control_is_on_at_loopback_by_default_and_off_when_asked() {
        let c = Config::from_yaml_str("{}").unwrap();
        assert_eq!(c.control.unwrap().listen.to_string(), "127.0.0.1:8067");
        assert_eq!(Config::from_yaml_str("control: off").unwrap().control, None);
        let c = Config::from_yaml_str("control: {listen: \"[::1]:9000\"}").unwrap();
        assert_eq!(c.control.unwrap().listen.to_string(), "[::1]:9000");
    }

    #[test]
    fn a_control_address_off_loopback_needs_credentials() {
        assert_eq!(
            error("control: {listen: \"0.0.0.0:8067\"}"),
            "control.user: required (with control.password) when control.listen (0.0.0.0:8067) \
             is not a loopback address: anyone who reaches it could change leases"
        );
        let c = Config::from_yaml_str("control: {listen: \"0.0.0.0:8067\", user: a, password: b}")
            .unwrap()
            .control
            .unwrap();
        assert_eq!(c.credentials, Some(("a".into(), "b".into())));
    }

    #[test]
    fn bad_control_keys_are_named() {
        assert_eq!(
            error("control: {listen: nowhere}"),
            "control.listen: must be ADDRESS:PORT (127.0.0.1:8067, [::1]:8067), not \"nowhere\""
        );
        assert_eq!(
            error("control: {user: a}"),
            "control.password: missing: user needs it"
        );
        assert_eq!(
            error("control: {password: a}"),
            "control.user: missing: password needs it"
        );
        assert_eq!(
            error("control: {port: \"1\"}"),
            "control.port: unknown key (control takes listen, user and password)"
        );
        assert_eq!(
            error("control: {user: \"\", password: b}"),
            "control.user: must not be empty"
        );
        assert_eq!(
            error("control: 7"),
            "control: must be off or a map of listen, user and password, not the number 7"
        );
    }
}
