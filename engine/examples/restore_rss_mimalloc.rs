//! `restore_rss` with mimalloc, the allocator the server uses.
//!
//! ```text
//! cargo run --release -p lessor-engine --example restore_rss_mimalloc -- N [bulk|single] [SHARDS]
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "restore_rss.rs"]
mod restore_rss;

fn main() {
    restore_rss::main();
}
