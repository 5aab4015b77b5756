//! `cargo fuzz run peer_payload`: see harness/peer_payload.rs for what it covers.
#![no_main]

#[path = "../harness/peer_payload.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
