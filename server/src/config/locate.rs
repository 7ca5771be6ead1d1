//! Turns a parse error's line and column into the key path of the node there.
//!
//! serde reports where it stopped, not which key it was in. We re-read the same text as a
//! schema-free tree with positions (JSON is YAML too) and take the last key or node that starts
//! at or before the error position.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::path::{at, join};
use super::wire::{Key, entries, items};

/// The key path at `line`:`column` (1-based) of `text`, if the text is well-formed enough to
/// tell. None at the document root.
pub(super) fn path_at(text: &str, line: u64, column: u64) -> Option<String> {
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, super::yaml_options()).ok()?;
    let mut marks = Vec::new();
    walk(&root, String::new(), &mut marks);
    marks
        .into_iter()
        .enumerate()
        .filter(|(_, (pos, _))| *pos <= (line, column))
        .max_by_key(|(i, (pos, _))| (*pos, *i))
        .map(|(_, (_, path))| path)
        .filter(|p| !p.is_empty())
}

/// A YAML node's shape, with the positions of its children and keys.
enum Node {
    Scalar,
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

type Mark = ((u64, u64), String);

fn pos<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

fn walk(node: &Spanned<Node>, path: String, marks: &mut Vec<Mark>) {
    marks.push((pos(node), path.clone()));
    match &node.value {
        Node::Scalar => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, at(&path, i), marks);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                let p = join(&path, &k.value.0);
                marks.push((pos(k), p.clone()));
                walk(v, p, marks);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// `visit_X(T)` methods that all yield [`Node::Scalar`]: a scalar's value does not matter here,
/// only where it starts.
macro_rules! scalars {
    ($($visit:ident($($t:ty)?)),* $(,)?) => {$(
        fn $visit<E>(self $(, _: $t)?) -> Result<Node, E> {
            Ok(Node::Scalar)
        }
    )*};
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_i128(i128),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
        visit_unit(),
        visit_none(),
    );
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node, A::Error> {
        items(seq).map(Node::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        entries(map, |k: Spanned<Key>| k).map(Node::Map)
    }
}

#[cfg(test)]
mod tests {
    use super::path_at;

    #[test]
    fn finds_the_key_at_a_position() {
        let y = "port: 67\nv4:\n  subnets:\n    - subnet: 10.0.0.0/24\n      poolz: []\n";
        assert_eq!(path_at(y, 1, 7).as_deref(), Some("port"));
        assert_eq!(path_at(y, 5, 7).as_deref(), Some("v4.subnets[0].poolz"));
        assert_eq!(path_at(y, 4, 20).as_deref(), Some("v4.subnets[0].subnet"));
        let j = r#"{"port": 67, "v4": {"subnets": [{"subnet": "x", "poolz": []}]}}"#;
        assert_eq!(path_at(j, 1, 58).as_deref(), Some("v4.subnets[0].poolz"));
        assert_eq!(path_at("a: [", 1, 4), None);
    }
}
