//! What comes in from outside the API's clients: Chatwoot's webhook payload, and the webhook
//! configuration and replay bodies, fed arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onwapp::http::fuzzing::parse_inbound_payloads(data);
});
