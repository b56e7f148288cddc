//! The file-transfer decoders against any bytes a hostile peer could send (the proptest twin
//! of `tests/fuzz/fuzz_targets/transfer.rs`, which cargo-fuzz runs longer): a control message,
//! a manifest, a data request and a response prelude each give a value or a typed error, never
//! a panic, and what decodes re-encodes to the same value. Also bytes near valid ones (a valid
//! encoding with bytes flipped or cut), where a decoder's edge cases are.

use proptest::prelude::*;
use tailchat::transfer::control::{self, Control, Offer};
use tailchat::transfer::data::{self, Request};
use tailchat::transfer::fetch::Plan;
use tailchat::transfer::manifest::{Entry, Manifest};
use tailchat::transfer::names::part_of;

fn decode_all(bytes: &[u8]) {
    if let Ok(c) = control::decode(bytes) {
        assert_eq!(control::decode(&control::encode(&c)).ok(), Some(c));
    }
    if let Ok(m) = Manifest::decode(bytes) {
        where_files_land(&m);
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
    }
    if let Ok(r) = Request::read(&mut &bytes[..]) {
        assert_eq!(Request::read(&mut &r.encode()[..]).ok(), Some(r));
    }
    let _ = data::read_response(&mut &bytes[..]);
}

/// A peer's file list, whatever it says: its sizes add up without overflow, and every file
/// lands inside the folder, none on another's `.part`.
fn where_files_land(m: &Manifest) {
    let _ = m.total();
    let _ = m.position(u32::MAX, u64::MAX);
    let top = std::path::PathBuf::from("/dl/folder");
    let finals = Plan::Folder { top: top.clone() }.finals(m);
    assert_eq!(finals.len(), m.entries.len());
    assert!(
        finals.iter().all(|p| p.starts_with(&top) && p != &top),
        "{finals:?}"
    );
    let parts: std::collections::HashSet<_> = finals.iter().map(|p| part_of(p)).collect();
    assert!(finals.iter().all(|p| !parts.contains(p)), "{finals:?}");
}

/// Valid encodings of every kind, to mutate.
fn valid() -> Vec<Vec<u8>> {
    let offer = Offer {
        id: u64::MAX,
        token: [7; 16],
        name: "ré port.pdf".into(),
        size: 1 << 40,
        files: 3,
        folder: true,
        manifest_hash: [9; 32],
        manifest_len: 83,
        port: 7654,
    };
    let manifest = Manifest {
        entries: vec![
            Entry {
                path: "a/b.txt".into(),
                size: 3,
                hash: [1; 32],
            },
            Entry {
                path: "c".into(),
                size: u64::MAX,
                hash: [2; 32],
            },
        ],
        folders: vec!["empty".into(), "a/deep/er".into()],
    };
    let request = Request {
        token: [3; 16],
        id: 42,
        file: 1,
        offset: 1 << 33,
    };
    let mut response = Vec::new();
    data::write_response(&mut response, data::Status::Ok, &manifest.encode()).unwrap();
    vec![
        control::encode(&Control::Offer(offer)),
        control::encode(&Control::Accept { id: 1 }),
        control::encode(&Control::Resume {
            id: 2,
            file: 3,
            offset: 4,
        }),
        control::encode(&Control::Cancel {
            id: 5,
            by_offerer: true,
            reason: "disk full".into(),
        }),
        control::encode(&Control::Done { id: 6 }),
        manifest.encode(),
        request.encode().to_vec(),
        response,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_file_list_adds_up_and_lands_inside_the_folder(
        entries in proptest::collection::vec(
            (
                proptest::string::string_regex("[a-zA-Z./\\ _\\-]{0,12}(\\.part)?").unwrap(),
                any::<u64>(),
            ),
            0..12,
        ),
    ) {
        let m = Manifest {
            entries: entries
                .into_iter()
                .map(|(path, size)| Entry { path, size, hash: [0; 32] })
                .collect(),
            folders: vec![],
        };
        where_files_land(&m);
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_all(&bytes);
    }

    #[test]
    fn valid_bytes_flipped_or_cut_decode_or_fail_cleanly(
        which in 0usize..8,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = valid()[which].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        decode_all(&bytes[..keep]);
        decode_all(&bytes);
    }
}

#[test]
fn the_valid_encodings_decode() {
    let v = valid();
    for c in &v[..5] {
        assert!(control::decode(c).is_ok());
    }
    assert!(Manifest::decode(&v[5]).is_ok());
    assert!(Request::read(&mut &v[6][..]).is_ok());
    assert_eq!(
        data::read_response(&mut &v[7][..]).unwrap().0,
        data::Status::Ok
    );
}
