//! The file-transfer vectors of `docs/PROTOCOL.md` §13.6: one worked example, alice offering
//! bob the folder `notes` (two files), from the control messages in the chat's stream to the
//! bytes of the data connection.
//!
//! The control messages are datagrams like every other vector (they are checked with the rest
//! in the parent module, and their payloads here). The data connection's vectors are byte
//! strings of a TCP stream: each is compared with what the code under test encodes, decoded
//! again, walked by hand by the spec's rules, and then played against the real offerer
//! ([`Server`]) and the real receiver ([`fetch::spawn`]) over loopback, so the spec's bytes are
//! what tailchat sends and what it accepts.

use super::{hex, read_varint, Vector, SPEC};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tailchat::proto::wire::{AppData, Frame};
use tailchat::proto::PeerId;
use tailchat::transfer::control::{self, Control, Offer, TAG_FILES};
use tailchat::transfer::data::{self, Request, Status};
use tailchat::transfer::fetch::{self, FetchError, Job, Plan};
use tailchat::transfer::manifest::{Entry, Manifest};
use tailchat::transfer::serve::{Server, Serving};
use tailchat::transfer::{DataEvent, TransferKey};

/// The offered folder's name.
pub const FOLDER: &str = "notes";
/// The first file of the folder, `notes/a.txt`.
const FILE_A: &[u8] = b"hi\n";
/// The second, `notes/sub/b.txt`.
const FILE_B: &[u8] = b"tailchat\n";
/// Alice's id for the transfer (random in real life).
pub const TRANSFER_ID: u64 = 0x1f2e_3d4c_5b6a_7988;
/// The offer's token (random in real life).
pub const DATA_TOKEN: [u8; 16] = [
    0x5d, 0x21, 0xe4, 0x0f, 0x93, 0xb7, 0x6a, 0xc8, 0x12, 0x7e, 0xd5, 0x39, 0xa0, 0x4b, 0x86, 0xf1,
];
/// Alice's TCP port for the data (her chat's port number).
pub const DATA_PORT: u16 = 7654;
/// Where bob resumes in vector `file-request-resume`: file 1, after its first 4 bytes.
const RESUME_FILE: u32 = 1;
const RESUME_OFFSET: u64 = 4;
/// How long a live exchange may take before the test fails (it takes milliseconds).
const WAIT: Duration = Duration::from_secs(30);

/// The folder's manifest: `a.txt` then `sub/b.txt` (depth first in name order).
pub fn manifest() -> Manifest {
    Manifest {
        entries: vec![
            Entry {
                path: "a.txt".into(),
                size: FILE_A.len() as u64,
                hash: *blake3::hash(FILE_A).as_bytes(),
            },
            Entry {
                path: "sub/b.txt".into(),
                size: FILE_B.len() as u64,
                hash: *blake3::hash(FILE_B).as_bytes(),
            },
        ],
        folders: vec![],
    }
}

/// A folder holding `a.txt` and the empty folders `logs` and `x/empty` (§13.3's list).
pub fn manifest_with_folders() -> Manifest {
    Manifest {
        entries: vec![Entry {
            path: "a.txt".into(),
            size: FILE_A.len() as u64,
            hash: *blake3::hash(FILE_A).as_bytes(),
        }],
        folders: vec!["logs".into(), "x/empty".into()],
    }
}

/// Alice's offer of the folder.
pub fn offer() -> Offer {
    let m = manifest().encode();
    Offer {
        id: TRANSFER_ID,
        token: DATA_TOKEN,
        name: FOLDER.into(),
        size: (FILE_A.len() + FILE_B.len()) as u64,
        files: 2,
        folder: true,
        manifest_hash: *blake3::hash(&m).as_bytes(),
        manifest_len: u32::try_from(m.len()).expect("small"),
        port: DATA_PORT,
    }
}

/// The control message of each datagram vector of §13.6.
pub fn controls() -> Vec<(&'static str, Control)> {
    vec![
        ("file-offer", Control::Offer(offer())),
        ("file-accept", Control::Accept { id: TRANSFER_ID }),
        ("file-decline", Control::Decline { id: TRANSFER_ID }),
        (
            "file-resume",
            Control::Resume {
                id: TRANSFER_ID,
                file: RESUME_FILE,
                offset: RESUME_OFFSET,
            },
        ),
        (
            "file-cancel",
            Control::Cancel {
                id: TRANSFER_ID,
                by_offerer: false,
                reason: "disk full".into(),
            },
        ),
        ("file-done", Control::Done { id: TRANSFER_ID }),
        (
            "file-pause",
            Control::Pause {
                id: TRANSFER_ID,
                at: 9,
                reason: "the disk is full".into(),
            },
        ),
    ]
}

/// The AppData frame carrying control message `name`, at stream position `seq`.
pub fn app_data(name: &str, seq: u64) -> Frame {
    let (_, c) = controls()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no control message {name}"));
    Frame::AppData(AppData {
        seq,
        data: control::encode(&c),
    })
}

fn request(file: u32, offset: u64) -> Request {
    Request {
        token: DATA_TOKEN,
        id: TRANSFER_ID,
        file,
        offset,
    }
}

/// A response as the code under test writes it, then `body`.
fn response(status: Status, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    data::write_response(&mut out, status, &manifest().encode()).expect("to memory");
    out.extend_from_slice(body);
    out
}

/// The data connection's vectors (TCP byte strings, not datagrams), as the code under test
/// makes them.
pub fn stream_vectors() -> Vec<(&'static str, Vec<u8>)> {
    let whole = [FILE_A, FILE_B].concat();
    let tail = &FILE_B[RESUME_OFFSET as usize..];
    vec![
        ("file-manifest", manifest().encode()),
        ("file-manifest-folders", manifest_with_folders().encode()),
        ("file-request", request(0, 0).encode().to_vec()),
        ("file-response", response(Status::Ok, &whole)),
        (
            "file-request-resume",
            request(RESUME_FILE, RESUME_OFFSET).encode().to_vec(),
        ),
        ("file-response-resume", response(Status::Ok, tail)),
        ("file-response-unknown", response(Status::Unknown, &[])),
    ]
}

fn find<'a>(vectors: &'a [Vector], name: &str) -> &'a Vector {
    vectors
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{SPEC} lacks vector {name}"))
}

/// Each data-path vector is what the code under test writes, and reads back as such.
pub fn check_stream_vectors(vectors: &[Vector]) {
    for (name, want) in stream_vectors() {
        let v = find(vectors, name);
        let at = format!("{SPEC}:{} (vector {name})", v.line);
        assert_eq!(hex(&v.bytes), hex(&want), "{at}: differs from the encoder");
    }
    let m = find(vectors, "file-manifest");
    assert_eq!(Manifest::decode(&m.bytes), Ok(manifest()));
    assert_eq!(
        Manifest::decode(&find(vectors, "file-manifest-folders").bytes),
        Ok(manifest_with_folders())
    );
    for (name, file, offset) in [
        ("file-request", 0, 0),
        ("file-request-resume", RESUME_FILE, RESUME_OFFSET),
    ] {
        let v = find(vectors, name);
        assert_eq!(
            Request::read(&mut &v.bytes[..]).expect("reads"),
            request(file, offset),
            "{name}"
        );
    }
    for (name, status) in [
        ("file-response", Status::Ok),
        ("file-response-resume", Status::Ok),
        ("file-response-unknown", Status::Unknown),
    ] {
        let v = find(vectors, name);
        let mut r = &v.bytes[..];
        let (got, len) = data::read_response(&mut r).expect("reads");
        assert_eq!(got, status, "{name}");
        if status == Status::Ok {
            assert_eq!(
                &r[..len as usize],
                &m.bytes[..],
                "{name}: the manifest follows"
            );
        } else {
            assert!(r.is_empty(), "{name}: nothing after a refusal");
        }
    }
}

/// The payload of the AppData frame that ends datagram vector `v`, and the frame's seq,
/// walked by the rules of §5.13 (kind 14, body length, seq, data length, data).
fn app_data_payload(v: &Vector) -> (u64, Vec<u8>) {
    let b = &v.bytes;
    let mut pos = 5;
    for _ in 0..3 {
        read_varint(b, &mut pos);
    }
    assert_eq!(read_varint(b, &mut pos), 14, "{}: kind AppData", v.name);
    let body = usize::try_from(read_varint(b, &mut pos)).expect("small");
    assert_eq!(
        pos + body,
        b.len(),
        "{}: the frame ends the datagram",
        v.name
    );
    let seq = read_varint(b, &mut pos);
    let len = usize::try_from(read_varint(b, &mut pos)).expect("small");
    assert_eq!(pos + len, b.len(), "{}: the payload ends the body", v.name);
    (seq, b[pos..].to_vec())
}

/// Every control vector's payload decodes to its message, and the offer, walked by hand by
/// §13.2, fixes the manifest of vector `file-manifest` (its hash and length) and the folder's
/// files (through the manifest's hashes).
pub fn check_control_payloads(vectors: &[Vector]) {
    for (name, want) in controls() {
        let (_, payload) = app_data_payload(find(vectors, name));
        assert_eq!(payload[0], TAG_FILES, "{name}: tag 01");
        assert_eq!(control::decode(&payload), Ok(want), "{name}");
    }
    // The offer, field by field.
    let (_, p) = app_data_payload(find(vectors, "file-offer"));
    let mut pos = 1;
    assert_eq!(read_varint(&p, &mut pos), 0, "variant Offer");
    assert_eq!(read_varint(&p, &mut pos), TRANSFER_ID, "id");
    assert_eq!(&p[pos..pos + 16], &DATA_TOKEN, "token");
    pos += 16;
    let n = usize::try_from(read_varint(&p, &mut pos)).expect("small");
    assert_eq!(&p[pos..pos + n], FOLDER.as_bytes(), "name");
    pos += n;
    let size = read_varint(&p, &mut pos);
    let files = read_varint(&p, &mut pos);
    assert_eq!(p[pos], 1, "folder: true");
    pos += 1;
    let manifest_hash = p[pos..pos + 32].to_vec();
    pos += 32;
    let manifest_len = read_varint(&p, &mut pos);
    assert_eq!(read_varint(&p, &mut pos), u64::from(DATA_PORT), "port");
    assert_eq!(pos, p.len(), "nothing left over");

    let m = &find(vectors, "file-manifest").bytes;
    assert_eq!(manifest_len, m.len() as u64, "manifest_len");
    assert_eq!(
        &manifest_hash[..],
        blake3::hash(m).as_bytes(),
        "manifest_hash"
    );
    // The manifest, entry by entry (§13.3): count, then path, size, hash.
    let mut pos = 0;
    assert_eq!(read_varint(m, &mut pos), files, "entries = files");
    let mut total = 0;
    for (path, content) in [("a.txt", FILE_A), ("sub/b.txt", FILE_B)] {
        let n = usize::try_from(read_varint(m, &mut pos)).expect("small");
        assert_eq!(&m[pos..pos + n], path.as_bytes());
        pos += n;
        let len = read_varint(m, &mut pos);
        assert_eq!(len, content.len() as u64, "{path}: size");
        assert_eq!(
            &m[pos..pos + 32],
            blake3::hash(content).as_bytes(),
            "{path}"
        );
        pos += 32;
        total += len;
    }
    assert_eq!(pos, m.len(), "nothing left over");
    assert_eq!(total, size, "the sizes add up to the offer's size");
}

/// The request and response vectors walked by the layout tables of §13.4: fixed-width
/// little-endian integers, the files' bytes back to back after the manifest.
pub fn check_data_layout(vectors: &[Vector]) {
    for (name, file, offset) in [
        ("file-request", 0u32, 0u64),
        ("file-request-resume", RESUME_FILE, RESUME_OFFSET),
    ] {
        let b = &find(vectors, name).bytes;
        assert_eq!(b.len(), 41, "{name}");
        assert_eq!(&b[..5], b"TCHF\x01", "{name}: magic, version 1");
        assert_eq!(&b[5..21], &DATA_TOKEN, "{name}: token");
        assert_eq!(&b[21..29], &TRANSFER_ID.to_le_bytes(), "{name}: id");
        assert_eq!(&b[29..33], &file.to_le_bytes(), "{name}: file");
        assert_eq!(&b[33..41], &offset.to_le_bytes(), "{name}: offset");
    }
    let m = &find(vectors, "file-manifest").bytes;
    let mut ok = b"TCHF\x01\x00".to_vec();
    ok.extend_from_slice(&u32::try_from(m.len()).expect("small").to_le_bytes());
    ok.extend_from_slice(m);
    let whole = [ok.as_slice(), FILE_A, FILE_B].concat();
    assert_eq!(find(vectors, "file-response").bytes, whole);
    let tail = [ok.as_slice(), &FILE_B[RESUME_OFFSET as usize..]].concat();
    assert_eq!(find(vectors, "file-response-resume").bytes, tail);
    assert_eq!(
        find(vectors, "file-response-unknown").bytes,
        b"TCHF\x01\x01"
    );
}

/// The folder on alice's disk, under `dir`.
fn write_folder(dir: &Path) -> std::path::PathBuf {
    let root = dir.join(FOLDER);
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("a.txt"), FILE_A).expect("write");
    std::fs::write(root.join("sub/b.txt"), FILE_B).expect("write");
    root
}

/// Sends `request` to `addr` and reads the answer to its end.
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request).expect("request");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("response");
    got
}

/// The real offerer, serving the folder, answers each request vector with its response
/// vector, byte for byte; a token it does not know gets `file-response-unknown`.
pub fn check_real_offerer(vectors: &[Vector]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = write_folder(tmp.path());
    let (events, _keep) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::start(Some(Ipv4Addr::LOCALHOST.into()), 0, events).expect("listen");
    let m = manifest();
    server.offer(
        DATA_TOKEN,
        Serving {
            id: TRANSFER_ID,
            root,
            folder: true,
            manifest_bytes: m.encode(),
            manifest: m,
            receiver: 2,
            cancelled: AtomicBool::new(false),
            modified: Vec::new(),
        },
    );
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), server.port());
    for (req, resp) in [
        ("file-request", "file-response"),
        ("file-request-resume", "file-response-resume"),
    ] {
        let got = exchange(addr, &find(vectors, req).bytes);
        assert_eq!(
            hex(&got),
            hex(&find(vectors, resp).bytes),
            "the offerer's answer to {req}"
        );
    }
    let mut wrong = find(vectors, "file-request").bytes.clone();
    wrong[5] ^= 1; // another token
    assert_eq!(
        exchange(addr, &wrong),
        find(vectors, "file-response-unknown").bytes
    );
}

/// Plays one response vector to the real receiver and returns how its attempt ended, after
/// checking that its request was the request vector.
fn fetch_from_vector(
    want_request: &[u8],
    response: &[u8],
    plan: Plan,
    manifest: Option<Manifest>,
    files_done: u32,
) -> Result<(), FetchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("address");
    let (want, resp) = (want_request.to_vec(), response.to_vec());
    let offerer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut got = [0u8; 41];
        s.read_exact(&mut got).expect("a whole request");
        s.write_all(&resp).expect("response");
        got.to_vec() == want
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    fetch::spawn(
        Job {
            key: TransferKey {
                offerer: PeerId(1),
                id: TRANSFER_ID,
            },
            addr,
            offer: offer(),
            manifest,
            plan,
            files_done,
            cancel: Arc::new(AtomicBool::new(false)),
        },
        tx,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        loop {
            match tokio::time::timeout(WAIT, rx.recv()).await {
                Ok(Some(DataEvent::FetchEnded { result, .. })) => return result,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("the fetch did not end"),
            }
        }
    });
    assert!(
        offerer.join().expect("offerer thread"),
        "the receiver's request differs from the vector"
    );
    result
}

/// The real receiver, served the response vectors, sends the request vectors and puts the
/// folder's files in place: whole, and resumed from a `.part` holding the first 4 bytes of
/// the second file.
pub fn check_real_receiver(vectors: &[Vector]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let top = tmp.path().join(FOLDER);
    std::fs::create_dir(&top).expect("mkdir");
    let result = fetch_from_vector(
        &find(vectors, "file-request").bytes,
        &find(vectors, "file-response").bytes,
        Plan::Folder { top: top.clone() },
        None,
        0,
    );
    assert_eq!(result, Ok(()));
    assert_eq!(std::fs::read(top.join("a.txt")).expect("a.txt"), FILE_A);
    assert_eq!(std::fs::read(top.join("sub/b.txt")).expect("b.txt"), FILE_B);

    let tmp = tempfile::tempdir().expect("tempdir");
    let top = tmp.path().join(FOLDER);
    std::fs::create_dir_all(top.join("sub")).expect("mkdir");
    std::fs::write(top.join("a.txt"), FILE_A).expect("first file in place");
    std::fs::write(top.join("sub/b.txt.part"), &FILE_B[..4]).expect("part");
    let result = fetch_from_vector(
        &find(vectors, "file-request-resume").bytes,
        &find(vectors, "file-response-resume").bytes,
        Plan::Folder { top: top.clone() },
        Some(manifest()),
        1,
    );
    assert_eq!(result, Ok(()));
    assert_eq!(std::fs::read(top.join("sub/b.txt")).expect("b.txt"), FILE_B);
    assert!(!top.join("sub/b.txt.part").exists());

    let result = fetch_from_vector(
        &find(vectors, "file-request").bytes,
        &find(vectors, "file-response-unknown").bytes,
        Plan::Folder {
            top: tmp.path().join("other"),
        },
        None,
        0,
    );
    assert_eq!(result, Err(FetchError::Refused(Status::Unknown)));
}

/// Names of the data-path vectors, which are not datagrams.
pub fn stream_vector_names() -> Vec<&'static str> {
    stream_vectors().into_iter().map(|(n, _)| n).collect()
}
