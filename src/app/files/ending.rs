//! How a file transfer ends: on our side (the peer is told, and the user why), on the
//! peer's, or because the peer cannot take files; and what an unfinished incoming transfer
//! leaves on disk.

use super::{now_ms, Files, Transfer};
use crate::proto::{AppDataError, Endpoint};
use crate::transfer::control::{self, Control};
use crate::transfer::fetch::Plan;
use crate::transfer::names;
use crate::transfer::record::State;
use crate::transfer::TransferKey;
use std::path::Path;
use std::sync::atomic::Ordering;

impl Files {
    /// A control message could not be queued for good.
    pub(super) fn refused_by_peer(&mut self, ep: &mut Endpoint, key: TransferKey, e: AppDataError) {
        let Some(t) = self.transfers.get(&key) else {
            return;
        };
        let nick = Self::nick(ep, t);
        let why = match e {
            AppDataError::Unsupported => {
                format!("{nick}'s tailchat cannot receive files (an older version)")
            }
            other => format!("cannot reach {nick}: {other}"),
        };
        self.finish(ep, key, State::Failed, Some(why));
    }

    /// The peer ended a transfer: `line` says how.
    pub(super) fn finish_remote(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        state: State,
        line: String,
    ) {
        self.stop(key);
        if let Some(t) = self.transfers.get_mut(&key) {
            t.record.state = state;
            t.record.reason = Some(line.clone());
            t.record.finished_ms = Some(now_ms());
            t.record.untold = true;
            self.untold.push(key);
            if t.fetching.is_none() {
                remove_parts(t);
            }
        }
        let kept = self.transfers.get(&key).map(kept_files).unwrap_or_default();
        self.save(key);
        let event = self
            .transfers
            .get(&key)
            .map_or("failed", Transfer::end_event);
        self.event(ep, key, event, format!("{line}{kept}"));
    }

    /// Ends a transfer on our side: stops its data, tells the peer, keeps the state, and
    /// (unless it is done) says why.
    pub(super) fn finish(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        state: State,
        reason: Option<String>,
    ) {
        self.finish_telling(ep, key, state, reason, None);
    }

    /// [`Files::finish`], telling the peer `for_them` as the reason (our line's `reason` names
    /// the peer and the transfer, which its own line says already).
    pub(super) fn finish_telling(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        state: State,
        reason: Option<String>,
        for_them: Option<String>,
    ) {
        self.stop(key);
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        let was = t.record.state;
        t.record.state = state;
        t.record.reason.clone_from(&reason);
        t.record.finished_ms = Some(now_ms());
        // Told once the screen has written the line it ends with (`Files::told`).
        t.record.untold = true;
        self.untold.push(key);
        let (peer, outgoing, name, dir) = (t.peer(), t.record.outgoing, t.shown_name(), t.toward());
        let nick = Self::nick(ep, t);
        let told = for_them
            .as_deref()
            .or(reason.as_deref())
            .map(|r| for_peer(r, t.record.dest.as_deref()));
        if t.fetching.is_none() && state != State::Done {
            remove_parts(t);
        }
        // An offer the receiver never answered, ended here: if it still waits unacknowledged
        // (the receiver away) and the receiver restarts, it is not sent again, so the
        // receiver does not see an offer that is already over (its Cancel, for a transfer it
        // never heard of, says nothing).
        let withdrawn = (outgoing && was == State::Offered && state != State::Done)
            .then(|| t.offer.clone())
            .flatten();
        if let Some(offer) = withdrawn {
            let offer = control::encode(&Control::Offer(offer));
            while ep.withdraw_app_data(peer, &offer) {}
        }
        let message = match state {
            State::Done if !outgoing => Some(Control::Done { id: key.id }),
            State::Declined => Some(Control::Decline { id: key.id }),
            State::Cancelled | State::Failed if was != State::Offered || !outgoing => {
                Some(Control::Cancel {
                    id: key.id,
                    by_offerer: outgoing,
                    reason: told.unwrap_or_default(),
                })
            }
            // An offer that never went out is withdrawn quietly.
            State::Cancelled | State::Failed => Some(Control::Cancel {
                id: key.id,
                by_offerer: true,
                reason: told.unwrap_or_default(),
            }),
            _ => None,
        };
        if let Some(m) = message {
            if !matches!(reason.as_deref(), Some(r) if r.contains("cannot receive files")) {
                let _ = Self::control(ep, peer, &m);
            }
        }
        let kept = self.transfers.get(&key).map(kept_files).unwrap_or_default();
        self.save(key);
        match state {
            State::Declined => {
                self.event(ep, key, "declined", format!("declined {name} from {nick}"))
            }
            State::Cancelled => self.event(
                ep,
                key,
                "cancelled",
                format!("cancelled {name} ({dir} {nick}){kept}"),
            ),
            State::Failed => self.event_error(
                ep,
                key,
                "failed",
                format!("{}{kept}", reason.unwrap_or_default()),
            ),
            _ => {}
        }
    }

    /// Stops the data of a transfer: no more serving, and a running fetch stops.
    pub(super) fn stop(&mut self, key: TransferKey) {
        let Some(t) = self.transfers.get(&key) else {
            return;
        };
        if let Some(flag) = &t.fetching {
            flag.store(true, Ordering::Release);
        }
        if let (true, Some(offer), Some(server)) = (t.record.outgoing, &t.offer, &self.server) {
            server.withdraw(&offer.token);
        }
    }
}

/// What an incoming folder that ended unfinished leaves: the files that had arrived whole
/// (each checked against its hash) stay where they landed, and its end line says so.
fn kept_files(t: &Transfer) -> String {
    let total = t.record.offer.files;
    // Counted on the disk: the fetch thread's reports of the last files placed may still be
    // on their way when it is stopped, and the user may have moved some away since.
    let done = match (&t.manifest, &t.record.dest) {
        (Some(m), Some(top)) if t.record.offer.folder && !t.record.outgoing => {
            let finals = Plan::Folder { top: top.clone() }.finals(m);
            let there = finals
                .iter()
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
                .count();
            u32::try_from(there).unwrap_or(u32::MAX)
        }
        _ => t.record.files_done,
    };
    match &t.record.dest {
        Some(dest) if !t.record.outgoing && t.record.offer.folder && done > 0 && done < total => {
            let are = if done == 1 { "is" } else { "are" };
            format!(
                " — the {done} of {total} files that had arrived whole {are} kept in {}",
                dest.display()
            )
        }
        _ => String::new(),
    }
}

/// A reason as the peer is told it: our folders are none of its business, so the download
/// folder `dest` is in is left out of the paths in it (`cannot write
/// /home/bob/Downloads/tailchat/x.part` → `cannot write x.part`).
pub(super) fn for_peer(reason: &str, dest: Option<&Path>) -> String {
    match dest.and_then(Path::parent) {
        Some(base) => reason.replace(&format!("{}/", base.display()), ""),
        None => reason.to_owned(),
    }
}

/// Removes what an unfinished incoming transfer left: the `.part` of the file it was on, and
/// the folders of a folder transfer that hold no file (the files already checked and in place
/// stay, and their folders).
pub(super) fn remove_parts(t: &Transfer) {
    if let Some(part) = part_path(t) {
        if std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(part);
        }
    }
    if let (false, true, Some(top)) = (t.record.outgoing, t.record.offer.folder, &t.record.dest) {
        remove_empty_folders(top);
    }
}

/// Removes the empty folders under `dir` and `dir` itself if it ends up empty (folders made
/// for a transfer that stopped before their files came); never through a symbolic link, and
/// nothing that holds anything.
fn remove_empty_folders(dir: &Path) {
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|k| k.is_dir()) {
                remove_empty_folders(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir); // fails, as it should, unless empty
}

/// The `.part` an incoming transfer writes now (the first file not in place), if known.
pub(super) fn part_path(t: &Transfer) -> Option<std::path::PathBuf> {
    if t.record.outgoing {
        return None;
    }
    let dest = t.record.dest.as_ref()?;
    match (&t.manifest, t.record.offer.folder) {
        (Some(m), true) => Plan::Folder { top: dest.clone() }
            .finals(m)
            .get(t.record.files_done as usize)
            .map(|f| names::part_of(f)),
        (_, false) => Some(names::part_of(dest)),
        (None, true) => None,
    }
}

/// How much of an incoming transfer is on our disk: the files in place and its `.part`
/// (what a fetch goes on from). Without a manifest yet, what the record says.
pub(super) fn bytes_on_disk(t: &Transfer) -> u64 {
    let Some(m) = &t.manifest else {
        return t.record.bytes_done;
    };
    let part = part_path(t)
        .and_then(|p| std::fs::symlink_metadata(p).ok())
        .filter(std::fs::Metadata::is_file)
        .map_or(0, |m| m.len());
    m.position(t.record.files_done, part)
        .min(t.record.offer.size)
}
