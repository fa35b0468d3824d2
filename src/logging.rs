//! Logging through `tracing`: one line per event on stderr.
//!
//! The default format is the one operators already read, `<UTC time> <LEVEL> core=<n> <text>`;
//! `logFormat: json` writes one JSON object per line instead (`time`, `level`, `core`, `target`,
//! `message` and the event's fields), for log shippers. The level comes from `logLevel`;
//! `logFilter` refines it per module with `tracing` directives (for example
//! `corestream::cluster=debug,corestream::ports=warn`). Every module logs through the macros
//! `error!`, `warn!`, `info!`, `debug!` defined here (thin wrappers of `tracing`'s, so the
//! target is the calling module); a core tags the log lines of its thread with `set_core`.
//! Called by `main` (once, at start) and by `server` (each core's thread).

use crate::base::config::{LogFormat, LogLevel};
use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

thread_local! {
    static CORE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Tags the log lines of this thread with a core number.
pub fn set_core(core: usize) {
    CORE.with(|cell| cell.set(Some(core)));
}

fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Off => "off",
    }
}

/// Installs the process-wide subscriber. `filter` (from `logFilter`) adds per-module
/// directives after the level; a malformed one is an error naming it. A second call (tests
/// that start several servers in one process) keeps the first subscriber.
pub fn init(level: LogLevel, filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    let mut directives = directive(level).to_string();
    if let Some(filter) = filter {
        directives.push(',');
        directives.push_str(filter);
    }
    let filter = EnvFilter::try_new(&directives)
        .map_err(|error| format!("logFilter '{directives}': {error}"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Lines { format })
        .try_init();
    Ok(())
}

/// Sets only the level (tests that run servers in-process).
pub fn set_level(level: LogLevel) {
    let _ = init(level, None, LogFormat::Text);
}

/// The line format of both `logFormat`s.
struct Lines {
    format: LogFormat,
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.extra.push((field.name(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.extra.push((field.name(), value.to_string()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time = utc_timestamp(now.as_secs(), now.subsec_millis());
        let level = event.metadata().level().as_str();
        let core = CORE.with(Cell::get);
        match self.format {
            LogFormat::Text => {
                write!(writer, "{time} {level}")?;
                if let Some(core) = core {
                    write!(writer, " core={core}")?;
                }
                write!(writer, " {}", fields.message)?;
                for (name, value) in &fields.extra {
                    write!(writer, " {name}={value}")?;
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut line = serde_json::Map::new();
                line.insert("time".into(), time.into());
                line.insert("level".into(), level.into());
                if let Some(core) = core {
                    line.insert("core".into(), core.into());
                }
                line.insert("target".into(), event.metadata().target().into());
                line.insert("message".into(), fields.message.into());
                for (name, value) in fields.extra {
                    line.insert(name.into(), value.into());
                }
                writeln!(writer, "{}", serde_json::Value::Object(line))
            }
        }
    }
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
macro_rules! error { ($($arg:tt)*) => { ::tracing::error!($($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { ::tracing::warn!($($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { ::tracing::info!($($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { ::tracing::debug!($($arg)*) }; }

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
