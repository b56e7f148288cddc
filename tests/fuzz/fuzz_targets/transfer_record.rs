//! Any bytes as a kept transfer record (`DATA_DIR/transfers/*.json`), loaded at start; and the
//! stored offer turned back into an offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tailchat::transfer::record::{self, Store};

fn dir() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(format!(
            "/dev/shm/tailchat-fuzz-record-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join(record::DIR)).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let file = dir()
        .join(record::DIR)
        .join("0000000000000001-0000000000000002.json");
    std::fs::write(&file, data).unwrap();
    let store = Store::new(dir());
    // A `now` late enough that a finished record is dropped, and one that keeps it.
    for now_ms in [0, i64::MAX] {
        let (records, _warnings) = store.load(now_ms);
        for r in &records {
            let _ = r.key();
            let _ = r.state.is_finished();
            if let Some(o) = r.offer.to_offer(r.id) {
                assert_eq!(record::StoredOffer::from_offer(&o).to_offer(r.id), Some(o));
            }
        }
        let _ = store.unfinished_peers(now_ms);
        std::fs::write(&file, data).unwrap();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(b) = record::unhex::<4>(s) {
            assert_eq!(record::unhex::<4>(&record::hex(&b)), Some(b));
        }
    }
});
