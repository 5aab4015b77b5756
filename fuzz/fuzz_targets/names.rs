//! `cargo fuzz run names`: see harness/names.rs for what it covers.
#![no_main]

#[path = "../harness/names.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
