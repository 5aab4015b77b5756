//! `cargo fuzz run presign`: see harness/presign.rs for what it covers.
#![no_main]

#[path = "../harness/presign.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
