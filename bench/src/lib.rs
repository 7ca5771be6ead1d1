//! lessor-bench: criterion benchmarks of the engine, the DHCPv4 handler and the journal.
//!
//! Run them with `cargo bench -p lessor-bench`; `tests/run` runs each once in test mode
//! (`cargo bench -- --test`) so they cannot rot. Fixture packets are built here so every bench
//! measures the same bytes.

/// A DHCPv4 request from client `n` (chaddr 02:00:xx:xx:xx:xx) relayed by `giaddr`, with
/// message type `kind` and extra options.
pub fn request(
    n: u32,
    kind: u8,
    giaddr: [u8; 4],
    ciaddr: [u8; 4],
    opts: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr);
    b[24..28].copy_from_slice(&giaddr);
    b[28..30].copy_from_slice(&[2, 0]);
    b[30..34].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    b.extend_from_slice(&[55, 7, 1, 3, 6, 15, 28, 42, 51]);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(255);
    b
}
