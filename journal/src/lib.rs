//! lessor-journal: the append-only lease journal (made real by the journal issue).
