//! Turns a parse error's line and column into the key path of the node there.
//!
//! serde reports where it stopped, not which key it was in. We re-read the same text as a
//! schema-free tree with positions (JSON is YAML too) and take the last key or node that starts
//! at or before the error position.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::path::{at, join};
use super::wire::Key;

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

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key()? {
            entries.push((k, map.next_value()?));
        }
        Ok(Node::Map(entries))
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
