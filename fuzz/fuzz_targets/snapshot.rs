//! `cargo fuzz run snapshot`: see harness/snapshot.rs for what it covers.
#![no_main]

#[path = "../harness/snapshot.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
