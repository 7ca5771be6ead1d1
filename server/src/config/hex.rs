//! Hex text for byte strings in the config: client ids, DUIDs, hardware addresses, option
//! payloads.

use std::fmt::Write as _;

/// Hex bytes: `01:02:0a`, `01-02-0a`, `0x01020a` or `01020a`. None if malformed or empty.
pub(super) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let sep = if s.contains(':') {
        Some(':')
    } else if s.contains('-') {
        Some('-')
    } else {
        None
    };
    let out: Option<Vec<u8>> = match sep {
        Some(sep) => s
            .split(sep)
            .map(|g| {
                let ok = (1..=2).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit());
                ok.then(|| u8::from_str_radix(g, 16).ok()).flatten()
            })
            .collect(),
        None => {
            let digits = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
                .collect()
        }
    };
    out.filter(|b| !b.is_empty())
}

/// `01:02:0a`.
pub(super) fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("aa:BB:0c"), Some(vec![0xaa, 0xbb, 0x0c]));
        assert_eq!(parse_hex("aa-bb-c"), Some(vec![0xaa, 0xbb, 0x0c]));
        assert_eq!(parse_hex("0xaabb"), Some(vec![0xaa, 0xbb]));
        assert_eq!(parse_hex("aabb"), Some(vec![0xaa, 0xbb]));
        assert_eq!(parse_hex("aab"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("aa::bb"), None);
        assert_eq!(parse_hex("aa:bbb"), None);
        assert_eq!(format_hex(&[1, 0xab]), "01:ab");
    }
}
