//! What members send each other: every `/cluster/*` body and a snapshot's data, fed arbitrary
//! bytes (after the secret: a member's bytes, or a stranger's who has it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onwapp_cluster::fuzzing::decode_every_rpc(data);
});
