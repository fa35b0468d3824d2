//! Logging: one line per event on stderr, `<UTC time> <LEVEL> core=<n> <text>`.
//!
//! The level is set once at start from the config's `logLevel`. Every module logs through the
//! macros `error!`, `warn!`, `info!`, `debug!` defined here; a core sets its number for the
//! thread it runs on with `set_core`.

use crate::config::LogLevel;
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LEVEL: AtomicU8 = AtomicU8::new(1);

thread_local! {
    static CORE: Cell<Option<usize>> = const { Cell::new(None) };
}

pub fn set_level(level: LogLevel) {
    LEVEL.store(rank(level), Ordering::Relaxed);
}

/// Tags the log lines of this thread with a core number.
pub fn set_core(core: usize) {
    CORE.with(|cell| cell.set(Some(core)));
}

fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 0,
        LogLevel::Info => 1,
        LogLevel::Warn => 2,
        LogLevel::Error => 3,
        LogLevel::Off => 100,
    }
}

pub fn enabled(level: LogLevel) -> bool {
    rank(level) >= LEVEL.load(Ordering::Relaxed) && level != LogLevel::Off
}

pub fn write(level: LogLevel, text: std::fmt::Arguments<'_>) {
    let name = match level {
        LogLevel::Debug => "DEBUG",
        LogLevel::Info => "INFO",
        LogLevel::Warn => "WARN",
        LogLevel::Error => "ERROR",
        LogLevel::Off => return,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let core = CORE.with(Cell::get);
    let mut line = format!(
        "{} {name}",
        utc_timestamp(now.as_secs(), now.subsec_millis())
    );
    if let Some(core) = core {
        line.push_str(&format!(" core={core}"));
    }
    line.push_str(&format!(" {text}\n"));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from seconds since the epoch (civil-from-days algorithm).
fn utc_timestamp(seconds: u64, millis: u32) -> String {
    let days = (seconds / 86_400) as i64;
    let time = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($level) {
            $crate::logging::write($level, format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::config::LogLevel::Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::config::LogLevel::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::config::LogLevel::Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::config::LogLevel::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc() {
        assert_eq!(super::utc_timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::utc_timestamp(1_795_521_600, 7),
            "2026-11-24T12:00:00.007Z"
        );
    }
}
