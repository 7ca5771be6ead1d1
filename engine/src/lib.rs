//! lessor-engine: the in-memory lease engine.
