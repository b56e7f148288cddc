//! Presence as the application keeps it: going away by itself after `auto_away` without
//! typing (and back at the first typed line), forgetting peers not heard for `forget_after`,
//! and the desktop notification of a line that calls us.

use crate::app::settings::Calls;
use crate::proto::{PeerId, PeerInfo, PeerState};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The reason given when we go away by ourselves.
pub const AUTO_AWAY_REASON: &str = "idle";
/// How often peers are checked against `forget_after`; the first check comes this long after
/// the start too, so that peers still there have rejoined by then (the journal's times count
/// the days we were not running, and a peer back after a month away is not to be forgotten,
/// and its waiting messages dropped, in the second before it answers).
const FORGET_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// At most one desktop notification this often: a peer repeating our nick cannot make us
/// start a process per line.
const NOTIFY_EVERY: Duration = Duration::from_secs(2);

/// What [`Presence`] starts from.
#[derive(Clone, Debug, Default)]
pub struct PresenceSetup {
    /// Away after this long without typing (`None`: never; scripts never are).
    pub auto_away: Option<Duration>,
    /// Peers not heard for this long are forgotten (`None`: never).
    pub forget_after: Option<Duration>,
    /// Away as the last run left it (`None`: here).
    pub away: Option<String>,
    /// When each peer was last heard, in milliseconds since the Unix epoch, as the journal
    /// says (peers it does not know a time for are not listed, and never forgotten for it).
    pub heard_ms: HashMap<PeerId, i64>,
    /// What a line that calls us does.
    pub calls: Calls,
    /// How often peers are checked against `forget_after` (`None`: every
    /// [`FORGET_CHECK_EVERY`]; tests check sooner).
    pub forget_check_every: Option<Duration>,
}

impl PresenceSetup {
    /// How often peers are checked against `forget_after`.
    fn check_every(&self) -> Duration {
        self.forget_check_every.unwrap_or(FORGET_CHECK_EVERY)
    }
}

/// Auto-away and forgetting, between wake-ups.
#[derive(Debug)]
pub struct Presence {
    /// See [`PresenceSetup`].
    setup: PresenceSetup,
    /// When a line was last typed.
    last_typed: Instant,
    /// The away in force was set by auto-away (so typing ends it).
    auto: bool,
    /// When peers are next checked against `forget_after`.
    next_forget_check: Instant,
    /// When the last desktop notification was made.
    last_notified: Option<Instant>,
}

/// What [`Presence::on_timer`] asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Go away by ourselves.
    pub go_away: bool,
    /// Forget these peers (not heard for `forget_after`), with how long each was not heard.
    pub forget: Vec<(PeerId, Duration)>,
}

impl Presence {
    /// Starts at `now`; the first check for peers to forget is [`FORGET_CHECK_EVERY`] later.
    pub fn new(setup: PresenceSetup, now: Instant) -> Self {
        Self {
            next_forget_check: now + setup.check_every(),
            setup,
            last_typed: now,
            auto: false,
            last_notified: None,
        }
    }

    /// Whether a desktop notification may be made at `now` (then it counts as made): at most
    /// one per [`NOTIFY_EVERY`].
    pub fn may_notify(&mut self, now: Instant) -> bool {
        let may = self
            .last_notified
            .is_none_or(|t| now.saturating_duration_since(t) >= NOTIFY_EVERY);
        if may {
            self.last_notified = Some(now);
        }
        may
    }

    /// The away reason the last run left, to set again at start.
    pub fn restored_away(&self) -> Option<&str> {
        self.setup.away.as_deref()
    }

    /// What a line that calls us does.
    pub fn calls(&self) -> Calls {
        self.setup.calls
    }

    /// A line was typed at `now`: true if that ends an auto-away.
    pub fn typed(&mut self, now: Instant) -> bool {
        self.last_typed = now;
        std::mem::take(&mut self.auto)
    }

    /// The user set away or back by hand: typing does not end it.
    pub fn set_by_hand(&mut self) {
        self.auto = false;
    }

    /// When [`Self::on_timer`] next has work, given whether we are `away` now.
    pub fn next_wakeup(&self, away: bool) -> Option<Instant> {
        let auto = self
            .setup
            .auto_away
            .filter(|_| !away)
            .map(|after| self.last_typed + after);
        let forget = self.setup.forget_after.map(|_| self.next_forget_check);
        auto.into_iter().chain(forget).min()
    }

    /// What is due at `now` (`now_ms` the same moment by the wall clock), given whether we are
    /// `away` and the peers known (asked for only when a check against `forget_after` is due:
    /// this runs at every timer of the loop).
    pub fn on_timer(
        &mut self,
        now: Instant,
        now_ms: i64,
        away: bool,
        peers: impl FnOnce() -> Vec<PeerInfo>,
    ) -> Due {
        let mut due = Due::default();
        if let Some(after) = self.setup.auto_away {
            if !away && now.saturating_duration_since(self.last_typed) >= after {
                due.go_away = true;
                self.auto = true;
            }
        }
        if let Some(after) = self.setup.forget_after {
            if now >= self.next_forget_check {
                self.next_forget_check = now + self.setup.check_every();
                due.forget = peers()
                    .iter()
                    .filter_map(|p| {
                        let silent = self.silent_for(p, now, now_ms)?;
                        (silent >= after).then_some((p.id, silent))
                    })
                    .collect();
            }
        }
        due
    }

    /// How long `p` has not been heard, if that is known: for a peer heard in this run, since
    /// then; for one only known from the journal, since the time the journal gives. A peer
    /// online is never silent.
    fn silent_for(&self, p: &PeerInfo, now: Instant, now_ms: i64) -> Option<Duration> {
        match p.state {
            PeerState::Online => None,
            PeerState::Offline => {
                let heard = *self.setup.heard_ms.get(&p.id)?;
                Some(crate::app::start::ago(now_ms, heard))
            }
            PeerState::Unreachable | PeerState::Left => {
                Some(now.saturating_duration_since(p.last_heard))
            }
        }
    }
}

/// Shows a desktop notification through `notify-send` (the freedesktop notification service),
/// in the background; where there is no desktop session or no `notify-send`, nothing happens.
/// `who` and `text` are shown as plain text: the markup some services read in the body is
/// escaped, and control characters are gone.
pub fn notify(who: &str, text: Option<&str>) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
        && std::env::var_os("DISPLAY").is_none()
    {
        return;
    }
    let title = format!("tailchat: {}", crate::ui::render::display_nick(who));
    let body = text.map(notification_body).unwrap_or_default();
    let spawned = std::process::Command::new("notify-send")
        .args(["--app-name=tailchat", "--", &title, &body])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned {
        // Reaped off the loop, so no zombie is left behind.
        std::thread::spawn(move || child.wait());
    }
}

/// A message's text as a notification body: sanitised for display, on one line, at most 200
/// characters, with `&`, `<` and `>` escaped (notification services may read the body as
/// markup).
pub fn notification_body(text: &str) -> String {
    let one_line = crate::ui::render::sanitize(text).replace(crate::ui::render::LINE_BREAK, " ");
    let mut short: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        short.push('…');
    }
    short
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Found;

    fn peer(id: u64, state: PeerState, last_heard: Instant) -> PeerInfo {
        PeerInfo {
            id: PeerId(id),
            nick: format!("p{id}"),
            addrs: vec![],
            found: Found::Announced,
            last_heard,
            rtt: None,
            undelivered: 0,
            state,
            away: None,
            ephemeral: false,
            key: None,
        }
    }

    fn setup() -> PresenceSetup {
        PresenceSetup {
            auto_away: Some(Duration::from_secs(15 * 60)),
            forget_after: Some(Duration::from_secs(30 * 86_400)),
            ..PresenceSetup::default()
        }
    }

    #[test]
    fn away_after_the_idle_time_and_back_at_the_first_typed_line() {
        let t0 = Instant::now();
        let mut p = Presence::new(setup(), t0);
        assert_eq!(p.next_wakeup(false), Some(t0 + Duration::from_secs(900)));
        let early = p.on_timer(t0 + Duration::from_secs(899), 0, false, Vec::new);
        assert!(!early.go_away);
        // Typing moves the deadline.
        assert!(!p.typed(t0 + Duration::from_secs(600)));
        assert!(
            !p.on_timer(t0 + Duration::from_secs(901), 0, false, Vec::new)
                .go_away
        );
        let due = p.on_timer(t0 + Duration::from_secs(1500), 0, false, Vec::new);
        assert!(due.go_away);
        // Away: no more auto-away wake-ups; the first line typed ends it, once.
        assert_eq!(p.next_wakeup(true), Some(t0 + FORGET_CHECK_EVERY));
        assert!(p.typed(t0 + Duration::from_secs(2000)));
        assert!(!p.typed(t0 + Duration::from_secs(2001)));
    }

    #[test]
    fn away_by_hand_is_not_ended_by_typing_and_zero_means_never() {
        let t0 = Instant::now();
        let mut p = Presence::new(setup(), t0);
        assert!(
            p.on_timer(t0 + Duration::from_secs(900), 0, false, Vec::new)
                .go_away
        );
        p.set_by_hand();
        assert!(!p.typed(t0 + Duration::from_secs(901)));
        let mut never = Presence::new(PresenceSetup::default(), t0);
        assert_eq!(never.next_wakeup(false), None);
        let due = never.on_timer(t0 + Duration::from_secs(1 << 30), 0, false, Vec::new);
        assert_eq!(due, Due::default());
    }

    #[test]
    fn peers_unheard_for_forget_after_are_forgotten_and_others_kept() {
        let t0 = Instant::now();
        let day = 86_400_000_i64;
        let now_ms = 100 * day;
        let mut s = setup();
        s.heard_ms.insert(PeerId(1), now_ms - 31 * day); // journal: 31 days ago
        s.heard_ms.insert(PeerId(2), now_ms - 29 * day);
        let mut p = Presence::new(s, t0);
        let mut peers = vec![
            peer(1, PeerState::Offline, t0),
            peer(2, PeerState::Offline, t0),
            peer(3, PeerState::Offline, t0), // no time known: kept
            peer(4, PeerState::Online, t0),
            peer(5, PeerState::Left, t0),
            peer(6, PeerState::Offline, t0),
        ];
        s_heard(&mut p, 6, now_ms - 40 * day);
        // Not at the start: the peers still there rejoin first (6 does, 40 days after we
        // last heard it, while we were not running).
        assert!(p
            .on_timer(t0, now_ms, false, || peers.clone())
            .forget
            .is_empty());
        assert_eq!(p.next_wakeup(true), Some(t0 + FORGET_CHECK_EVERY));
        peers[5].state = PeerState::Online;
        let hour = t0 + FORGET_CHECK_EVERY;
        let due = p.on_timer(hour, now_ms, false, || peers.clone());
        assert_eq!(due.forget.len(), 1);
        assert_eq!(due.forget[0].0, PeerId(1));
        assert!(due.forget[0].1 >= Duration::from_secs(31 * 86_400));
        // Checked again an hour later, not before.
        assert!(p
            .on_timer(hour + Duration::from_secs(60), now_ms, false, || peers
                .clone())
            .forget
            .is_empty());
        peers.pop();
        let later = t0 + Duration::from_secs(31 * 86_400);
        let due = p.on_timer(later, now_ms + 31 * day, false, || peers.to_vec());
        let ids: Vec<u64> = due.forget.iter().map(|(id, _)| id.0).collect();
        assert_eq!(
            ids,
            [1, 2, 5],
            "left 31 days ago in this run: forgotten too"
        );
    }

    fn s_heard(p: &mut Presence, id: u64, at_ms: i64) {
        p.setup.heard_ms.insert(PeerId(id), at_ms);
    }

    #[test]
    fn notifications_are_at_most_one_per_two_seconds() {
        let t0 = Instant::now();
        let mut p = Presence::new(PresenceSetup::default(), t0);
        assert!(p.may_notify(t0));
        assert!(!p.may_notify(t0 + Duration::from_millis(1999)));
        assert!(p.may_notify(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_notification_body_cannot_carry_markup_or_controls() {
        assert_eq!(
            notification_body("<b>hi</b> & \x1b[31mred\nnext"),
            "&lt;b&gt;hi&lt;/b&gt; &amp; red next"
        );
        assert_eq!(notification_body(&"x".repeat(300)).chars().count(), 201);
    }
}
