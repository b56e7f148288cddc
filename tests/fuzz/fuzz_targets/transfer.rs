//! Any bytes to the file-transfer decoders (a control message, a manifest, a data request, a
//! response prelude): a value or a typed error, never a panic; and what decodes re-encodes to
//! bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailchat::transfer::{control, data, fetch::Plan, manifest::Manifest};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(c) = control::decode(bytes) {
        assert_eq!(control::decode(&control::encode(&c)).ok(), Some(c));
    }
    if let Ok(m) = Manifest::decode(bytes) {
        // Sums of a peer's sizes never overflow (a debug build would panic), and every file
        // lands inside the folder, none on another's `.part`.
        let _ = m.total();
        let _ = m.position(u32::MAX, u64::MAX);
        let top = std::path::PathBuf::from("/dl/folder");
        let finals = Plan::Folder { top: top.clone() }.finals(&m);
        assert!(finals.iter().all(|p| p.starts_with(&top) && p != &top));
        assert!(finals.iter().all(|p| p
            .strip_prefix(&top)
            .unwrap()
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))));
        let apart: std::collections::HashSet<_> = finals.iter().collect();
        assert_eq!(apart.len(), finals.len(), "two files land on one path");
        let parts: std::collections::HashSet<_> = finals
            .iter()
            .map(|p| tailchat::transfer::names::part_of(p))
            .collect();
        assert!(finals.iter().all(|p| !parts.contains(p)));
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
    }
    if let Ok(r) = data::Request::read(&mut &bytes[..]) {
        assert_eq!(data::Request::read(&mut &r.encode()[..]).ok(), Some(r));
    }
    let _ = data::read_response(&mut &bytes[..]);
});
