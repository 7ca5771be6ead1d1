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

/// A value with the key path that set it; an inherited value keeps its parent's path, so a
/// message about it names where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct At<T> {
    pub(super) value: T,
    pub(super) path: String,
}
