//! Any bytes to the file-transfer decoders (a control message, a manifest, a data request, a
//! response prelude): a value or a typed error, never a panic; and what decodes re-encodes to
//! bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailchat::transfer::{control, data, manifest::Manifest};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(c) = control::decode(bytes) {
        assert_eq!(control::decode(&control::encode(&c)).ok(), Some(c));
    }
    if let Ok(m) = Manifest::decode(bytes) {
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
    }
    if let Ok(r) = data::Request::read(&mut &bytes[..]) {
        assert_eq!(data::Request::read(&mut &r.encode()[..]).ok(), Some(r));
    }
    let _ = data::read_response(&mut &bytes[..]);
});
