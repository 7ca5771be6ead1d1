//! lessor-perf: load generator for lessor.
fn main() {}
