//! Key paths as shown in messages: `v4.subnets[1].pools[0]`.

/// `parent.key` (just `key` at the root).
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub(super) fn at(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
