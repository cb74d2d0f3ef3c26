//! Every request-body parser and validator of the API, fed arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onwapp::http::fuzzing::parse_every_body(data);
});
