//! `cargo fuzz run wal`: see harness/wal.rs for what it covers.
#![no_main]

#[path = "../harness/wal.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
