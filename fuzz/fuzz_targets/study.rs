#![no_main]

mod inputs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| inputs::study(data));
