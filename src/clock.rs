//! The wall clock, read one way everywhere: milliseconds since the Unix epoch, and the local
//! time for the screen. A clock set before 1970 reads as the epoch instead of panicking, as
//! `chrono::Utc::now` and `chrono::Local::now` do (`clippy.toml` forbids those two).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 when the clock reads before it.
pub fn now_ms() -> i64 {
    reading_ms().max(0)
}

/// What the clock reads, in milliseconds since the Unix epoch, negative before it: to tell
/// the user what their clock says.
pub fn reading_ms() -> i64 {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => ms(after),
        Err(before) => -ms(before.duration()),
    }
}

/// The local date and time, for the screen (the epoch when the clock reads before it).
pub fn local_now() -> chrono::DateTime<chrono::Local> {
    local_at(now_ms())
}

/// The local date and time at `ms` since the epoch, before it when negative (the epoch when
/// out of chrono's range).
pub fn local_at(ms: i64) -> chrono::DateTime<chrono::Local> {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_after_the_epoch_and_out_of_range_times_fall_back_to_it() {
        assert!(now_ms() > 1_700_000_000_000, "this test runs after 2023");
        assert!(reading_ms() >= now_ms() - 1_000);
        assert_eq!(local_at(-3_600_000).timestamp(), -3_600);
        assert_eq!(local_at(i64::MAX).timestamp(), 0);
        assert_eq!(local_at(1_000).timestamp(), 1);
    }
}
