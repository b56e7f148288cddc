//! Any journal file, read back: opened read-only and then writable (which repairs a torn tail
//! and may compact), with history queried both times. The first input byte picks the layout:
//! even, the rest of the input is the file after the header; odd, the rest is cut at 0xff
//! bytes into record payloads, each framed with a right length and checksum, so the fuzzer
//! reaches the record decoder past the CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tailchat::proto::PeerId;
use tailchat::store::journal::{HistoryFilter, HistoryLimit, Journal, HEADER, MARKER};

fn dir() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(format!(
            "/dev/shm/tailchat-fuzz-journal-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn queries(j: &Journal) {
    for filter in [
        HistoryFilter::Group,
        HistoryFilter::Direct { nick: "bob".into() },
        HistoryFilter::Peer { id: PeerId(1) },
    ] {
        let _ = j.history(&filter, 50);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = HEADER.to_vec();
    if mode & 1 == 0 {
        file.extend_from_slice(rest);
    } else {
        for payload in rest.split(|&b| b == 0xff) {
            file.extend_from_slice(&MARKER);
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            file.extend_from_slice(payload);
        }
    }
    let path = dir().join("journal");
    std::fs::write(&path, &file).unwrap();
    if let Ok((j, _restored)) = Journal::open_read_only(&path) {
        queries(&j);
    }
    // Writable, with a small limit so compaction runs on small inputs too (mode bit 1).
    let limit = if mode & 2 == 0 {
        HistoryLimit::default()
    } else {
        HistoryLimit {
            messages: 2,
            days: None,
        }
    };
    if let Ok((j, _restored)) = Journal::open_with(&path, &limit) {
        queries(&j);
        drop(j);
        // What was left on disk (repaired, perhaps compacted) reads back.
        let (_j, again) = Journal::open_read_only(&path).expect("a repaired journal reads back");
        let _ = again;
    }
});
