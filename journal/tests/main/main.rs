//! Integration tests of lessor-journal, through the `Fs` seam (`FaultyFs`) and on disk.

mod common;
mod compaction_tests;
mod fault_tests;
mod offline_tests;
mod prop_tests;
mod recovery_tests;
mod reuse_tests;
mod roundtrip_tests;
mod stream_tests;
