//! The embedded default config and the full example, as YAML text (parsed by the tests).

/// The configuration lessor runs with when no `--config` is given.
///
/// Loopback only, port 6767 (test mode: no root needed, replies go back to the request's source,
/// so `perfdhcp -N 6767 -L 6768 127.0.0.1` works), state in `./lessor-state` so an ordinary
/// user can run it. One subnet, 10.0.0.0/8, selected by relay address 127.0.0.1 (what perfdhcp
/// puts in giaddr); its pool leaves out the network and broadcast addresses.
pub const DEFAULT_LOOPBACK_YAML: &str = include_str!("../../../examples/default.yaml");

/// An example using every key the config accepts (`docs/CONFIG.md` says what each means).
pub const EXAMPLE_FULL_YAML: &str = include_str!("../../../examples/full.yaml");

/// A DHCPv6-only example: an ISP's customer link with address and prefix delegation pools and
/// static prefixes by remote-id.
pub const EXAMPLE_V6_YAML: &str = include_str!("../../../examples/v6.yaml");

/// [`EXAMPLE_FULL_YAML`] with its `ha.stream_key_file` and `ha.etcd_tls` files in a new
/// folder, which lives as long as the handle: a key (0600) and stand-in PEM files.
#[cfg(test)]
pub(super) fn full_example() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let pem = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
    let files = [
        ("stream.key", [b'k'; 32].to_vec()),
        ("etcd-ca.pem", pem("CERTIFICATE").into_bytes()),
        ("etcd-client.pem", pem("CERTIFICATE").into_bytes()),
        ("etcd-client.key", pem("PRIVATE KEY").into_bytes()),
    ];
    let mut text = EXAMPLE_FULL_YAML.to_owned();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("writing an example's file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        let quoted = format!("{:?}", path.display().to_string());
        text = text.replace(&format!("/etc/lessor/{name}"), &quoted);
    }
    (dir, text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::wire::Value;
    use super::EXAMPLE_FULL_YAML;

    /// The configuration reference, whose key list must match the full example.
    const CONFIG_DOC: &str = include_str!("../../../docs/CONFIG.md");

    /// Every key path under `v` (`[]` for any list entry), not looking inside `options` maps,
    /// whose keys are option names.
    fn collect(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Map(entries) => {
                for (k, x) in entries {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    // A shared network's subnets take the keys of a family's `subnets[]`.
                    out.insert(p.replace(".shared_networks[].subnets[]", ".subnets[]"));
                    if k != "options" {
                        collect(x, &p, out);
                    }
                }
            }
            Value::Seq(items) => items
                .iter()
                .for_each(|x| collect(x, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    /// The first column of each row of the doc's key table: `` | `v4.subnets[].id` | ... ``.
    fn doc_keys() -> BTreeSet<String> {
        CONFIG_DOC
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    #[test]
    fn config_doc_lists_exactly_the_keys_of_the_full_example() {
        let example: Value = serde_saphyr::from_str(EXAMPLE_FULL_YAML).unwrap();
        let mut in_example = BTreeSet::new();
        collect(&example, "", &mut in_example);
        let in_doc = doc_keys();
        let undocumented: Vec<_> = in_example.difference(&in_doc).collect();
        let unused: Vec<_> = in_doc.difference(&in_example).collect();
        assert!(
            undocumented.is_empty(),
            "keys in examples/full.yaml missing from docs/CONFIG.md: {undocumented:?}"
        );
        assert!(
            unused.is_empty(),
            "keys in docs/CONFIG.md missing from examples/full.yaml: {unused:?}"
        );
        assert!(
            in_doc.len() > 100,
            "the key table was not found: {in_doc:?}"
        );
    }
}
