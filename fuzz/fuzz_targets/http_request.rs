#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hipache_raft::fuzzing::http_request(data));
