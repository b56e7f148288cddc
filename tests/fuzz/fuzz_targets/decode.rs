//! Any bytes: decoding returns a value or a typed error, never panics; and whatever decodes
//! re-encodes to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailchat::proto::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = wire::decode(data) {
        let again = wire::encode(&d.header, &d.frames);
        let d2 = wire::decode(&again).expect("re-encoded datagram decodes");
        assert_eq!(d.header, d2.header);
        assert_eq!(d.frames, d2.frames);
    }
});
