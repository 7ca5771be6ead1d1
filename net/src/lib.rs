//! lessor-net: sockets and batching for lessor.
