//! The empty folders of a folder transfer (spec §13.3) against a sender that lies: a fake
//! offerer on loopback serves a crafted manifest to the real receiver (`fetch::spawn`). Paths
//! stay inside the transfer's folder, a cancelled transfer makes none, a crash between the
//! files and the folders is made good, a list that would make too many folders is refused,
//! and a file whose cleaned name is a folder's does not stop the transfer.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tailchat::proto::PeerId;
use tailchat::transfer::control::Offer;
use tailchat::transfer::data::{self, Request, Status};
use tailchat::transfer::fetch::{self, FetchError, Job, Plan};
use tailchat::transfer::manifest::{Entry, Manifest};
use tailchat::transfer::{DataEvent, TransferKey};

/// Serves `bytes` as the manifest and `files` (in order) from the requested place, once.
fn serve_once(manifest: Vec<u8>, files: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let req = Request::read(&mut s).unwrap();
        data::write_response(&mut s, Status::Ok, &manifest).unwrap();
        for (i, f) in files.iter().enumerate().skip(req.file as usize) {
            let skip = if i == req.file as usize {
                req.offset as usize
            } else {
                0
            };
            s.write_all(&f[skip..]).unwrap();
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    (port, h)
}

fn entry(path: &str, body: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        size: body.len() as u64,
        hash: *blake3::hash(body).as_bytes(),
    }
}

/// Runs one attempt of a folder transfer of `m` (raw `bytes`, files `bodies`) into `top`.
fn fetch_into(
    top: &Path,
    bytes: Vec<u8>,
    m: &Manifest,
    bodies: Vec<Vec<u8>>,
    files_done: u32,
    cancelled: bool,
) -> (Result<(), FetchError>, Vec<DataEvent>) {
    let (port, server) = serve_once(bytes.clone(), bodies);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut job = folder_job(top, &bytes, m, port, (files_done > 0).then(|| m.clone()));
    job.files_done = files_done;
    job.cancel = Arc::new(AtomicBool::new(cancelled));
    fetch::spawn(job, tx);
    let mut events = Vec::new();
    loop {
        match rx.blocking_recv() {
            Some(DataEvent::FetchEnded { result, .. }) => {
                let _ = server.join();
                return (result, events);
            }
            Some(e) => events.push(e),
            None => panic!("the fetch ended without saying how"),
        }
    }
}

/// The job of a folder transfer of `m` (raw `bytes`) into `top`, from an offerer on loopback
/// at `port`; `manifest`: the one kept from an earlier attempt, if any.
fn folder_job(
    top: &Path,
    bytes: &[u8],
    m: &Manifest,
    port: u16,
    manifest: Option<Manifest>,
) -> Job {
    Job {
        key: TransferKey {
            offerer: PeerId(1),
            id: 7,
        },
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        offer: Offer {
            id: 7,
            token: [9; 16],
            name: "pc".into(),
            size: m.total(),
            files: m.entries.len() as u32,
            folder: true,
            manifest_hash: *blake3::hash(bytes).as_bytes(),
            manifest_len: bytes.len() as u32,
            port,
        },
        manifest,
        plan: Plan::Folder {
            top: top.to_path_buf(),
        },
        files_done: 0,
        cancel: Arc::new(AtomicBool::new(false)),
    }
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let mut es: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap()).collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            let t = fs::symlink_metadata(&p).unwrap().file_type();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if t.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else if t.is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else {
                out.push(rel);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Hostile paths: all land inside the transfer's folder; a link planted there is not
/// followed.
#[test]
fn hostile_folder_paths_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().join("dl");
    let top = dl.join("pc");
    fs::create_dir_all(&top).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, top.join("planted")).unwrap();
    let body = b"hi\n".to_vec();
    let m = Manifest {
        entries: vec![entry("a.txt", &body), entry("x", b"X")],
        folders: vec![
            "../../escape".into(),
            "/abs/olute".into(),
            "a/../../b".into(),
            "planted/inside".into(),
            "a.txt".into(),     // a file in the way
            "a.txt/sub".into(), // under a file
            "x.part".into(),    // the .part name of a file
            "\u{202e}evil\u{1b}[2J".into(),
            "..".into(),
            "d/".repeat(40), // deeper than 32
        ],
    };
    let (r, _) = fetch_into(&top, m.encode(), &m, vec![body, b"X".to_vec()], 0, false);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing through the link"
    );
    assert!(!tmp.path().join("escape").exists() && !dl.join("escape").exists());
}

/// A transfer cancelled before its attempt makes no folders.
#[test]
fn a_cancelled_transfer_makes_no_empty_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("pc");
    fs::create_dir_all(&top).unwrap();
    let m = Manifest {
        entries: vec![],
        folders: (0..50).map(|i| format!("made-after-cancel-{i}")).collect(),
    };
    let (r, _) = fetch_into(&top, m.encode(), &m, vec![], 0, true);
    let made = fs::read_dir(&top).unwrap().count();
    assert_eq!(r, Err(FetchError::Cancelled));
    assert_eq!(made, 0, "folders made for a cancelled transfer");
}

/// A crash after the files were placed, before the folders: the next attempt makes them,
/// unless the transfer was cancelled meanwhile.
#[test]
fn a_resume_with_the_files_in_place_makes_the_folders_unless_cancelled() {
    for cancelled in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("pc");
        fs::create_dir_all(&top).unwrap();
        fs::write(top.join("a.txt"), b"hi\n").unwrap();
        let m = Manifest {
            entries: vec![entry("a.txt", b"hi\n")],
            folders: vec!["logs".into(), ".git/refs/tags".into()],
        };
        let (r, _) = fetch_into(&top, m.encode(), &m, vec![b"hi\n".to_vec()], 1, cancelled);
        let made = [top.join("logs"), top.join(".git/refs/tags")].map(|p| p.is_dir());
        if cancelled {
            assert_eq!(r, Err(FetchError::Cancelled));
            assert_eq!(made, [false, false]);
        } else {
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(made, [true, true]);
        }
    }
}

/// A list whose paths would make more folders than any real one (5000 paths, 32 deep, all
/// apart: 160 000 folders, from an offer of "0 files, 0 B") is stopped as a broken offer.
#[test]
fn a_folder_list_that_makes_too_many_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("pc");
    fs::create_dir_all(&top).unwrap();
    let m = Manifest {
        entries: vec![],
        folders: (0..5000)
            .map(|i| {
                (0..32)
                    .map(|d| format!("{i}-{d}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect(),
    };
    let (r, _) = fetch_into(&top, m.encode(), &m, vec![], 0, false);
    match r {
        Err(FetchError::Broken(why)) => assert!(why.contains("empty folders"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// A file whose name cleans to a folder's name (` a`, leading space, beside the folder `a`):
/// it is numbered, and both arrive.
#[test]
fn a_file_cleaned_to_a_folders_name_is_numbered() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("pc");
    fs::create_dir_all(&top).unwrap();
    let m = Manifest {
        entries: vec![entry(" a", b"one"), entry("a/b.txt", b"two")],
        folders: vec!["e".into()],
    };
    let (r, _) = fetch_into(
        &top,
        m.encode(),
        &m,
        vec![b"one".to_vec(), b"two".to_vec()],
        0,
        false,
    );
    assert!(r.is_ok(), "{r:?}; {:?}", tree(&top));
    assert_eq!(fs::read(top.join("a (1)")).unwrap(), b"one");
    assert_eq!(fs::read(top.join("a/b.txt")).unwrap(), b"two");
    // And one cleaned to an empty folder's name.
    let m = Manifest {
        entries: vec![entry(" e", b"three")],
        folders: vec!["e".into()],
    };
    let top = tmp.path().join("pc2");
    fs::create_dir_all(&top).unwrap();
    let (r, _) = fetch_into(&top, m.encode(), &m, vec![b"three".to_vec()], 0, false);
    assert!(r.is_ok(), "{r:?}");
    assert!(top.join("e").is_dir());
    assert_eq!(fs::read(top.join("e (1)")).unwrap(), b"three");
}

/// A resumed file: its part is read back from the disk (and hashed again) before bytes come
/// from the socket, which takes seconds for a large part. Once it is read back the fetch says
/// again where bytes start to arrive, so the rate (and the time left) is measured from there
/// rather than over the read-back.
#[test]
fn a_resumed_part_says_where_bytes_arrive_once_it_is_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("pc");
    fs::create_dir(&top).unwrap();
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let m = Manifest {
        entries: vec![entry("big.bin", &body)],
        folders: vec![],
    };
    let had = (2 << 20) + 4321;
    fs::write(top.join("big.bin.part"), &body[..had]).unwrap();
    let bytes = m.encode();
    let (port, server) = serve_once(bytes.clone(), vec![body.clone()]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job = folder_job(&top, &bytes, &m, port, Some(m.clone()));
    fetch::spawn(job, tx);
    let mut fetching = Vec::new();
    loop {
        match rx.blocking_recv() {
            Some(DataEvent::FetchEnded { result, .. }) => {
                assert!(result.is_ok(), "{result:?}");
                break;
            }
            Some(DataEvent::Fetching { from, .. }) => fetching.push(from),
            Some(_) => {}
            None => panic!("the fetch ended without saying how"),
        }
    }
    server.join().unwrap();
    assert_eq!(fs::read(top.join("big.bin")).unwrap(), body);
    // At the connection, and again after the read-back, from where the part ended.
    assert_eq!(fetching, [had as u64, had as u64]);
}
