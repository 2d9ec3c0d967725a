//! `known_hosts` matching: the input is a host name, a newline, then the
//! file. The host is looked up on port 22 and on port 2222 with two keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_fuzz::split_at_byte;
use mirrorplan_node::fuzzing::known_hosts_check;

const KEYS: [&str; 2] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM3/X8jS/bw0dwJkzoc3CaOZVZ99LEBcNCUtjShujR5R",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEnvUOR5WnXkpWJbJ4rMBk/1PLGRi9znqV21ISJ3pbr8",
];

fuzz_target!(|data: &[u8]| {
    let (host, contents) = split_at_byte(data, b'\n');
    let (Ok(host), Ok(contents)) = (std::str::from_utf8(host), std::str::from_utf8(contents))
    else {
        return;
    };
    for port in [22, 2222] {
        for key in KEYS {
            if known_hosts_check(contents, host, port, key).is_none() {
                panic!("the test key does not parse");
            }
        }
    }
});
