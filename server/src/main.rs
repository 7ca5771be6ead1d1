//! The lessor binary.
fn main() {}
