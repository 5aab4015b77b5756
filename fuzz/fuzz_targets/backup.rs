//! `cargo fuzz run backup`: see harness/backup.rs for what it covers.
#![no_main]

#[path = "../harness/backup.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
