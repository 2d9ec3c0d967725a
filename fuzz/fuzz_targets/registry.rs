//! Registry responses: manifests and indexes (with the platform filter),
//! error bodies and `WWW-Authenticate` headers. The input is a
//! `Content-Type`, a newline, then the body; each line of the body is also
//! read as a `WWW-Authenticate` header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_fuzz::split_at_byte;
use mirrorplan_registry::fuzzing;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = split_at_byte(data, b'\n');
    let content_type = String::from_utf8_lossy(content_type);
    for platforms in [
        &[][..],
        &["linux/amd64"],
        &["linux/arm64/v8", "windows/amd64"],
    ] {
        fuzzing::manifest(body, &content_type, platforms);
    }
    let _ = fuzzing::error_detail(body);
    let _ = fuzzing::challenge(&content_type);
    for line in String::from_utf8_lossy(body).lines() {
        let _ = fuzzing::challenge(line);
    }
});
