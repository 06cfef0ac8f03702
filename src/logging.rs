//! Logging: tracing to stderr, one event per line, for terminals, journals and log shippers.
//!
//! The filter comes from `--log-level` if given, else `RUST_LOG`, else the command's default
//! (`info` for the daemon, `warn` for the one-shot commands, whose output is their report).
//! Text output is coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! ([`use_color`]); a newline inside an event is escaped so an event is always one line.
//! `--log-format json` writes one JSON object per line. Every event about a supervised child
//! carries its `path` field. A panic hook routes panics (including those caught inside actors)
//! through tracing.
//!
//! Under systemd, when stderr is the journal stream that `JOURNAL_STREAM` names (its
//! `<device>:<inode>` match stderr's, as `systemd.exec(5)` prescribes), every line starts with
//! the syslog priority of its level (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and
//! trace: sd-daemon's `SD_ERR` … `SD_DEBUG`). journald strips the prefix and records the
//! priority, so `journalctl -p warning` shows the warnings and errors alone. Anywhere else
//! (a terminal, a file, a pipe, a child that inherited the variable) there is no prefix.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber and the panic hook. `level` is an `EnvFilter` directive
/// (`debug`, `revka=debug,ractor=warn`, ...) from `--log-level`; without it `RUST_LOG` applies,
/// else `default_level`. Supervision events also go to the run log (once the daemon opens
/// it), with their own filter, whatever the console level.
pub fn init(level: Option<&str>, default_level: &str, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match level {
        Some(directive) => EnvFilter::try_new(directive)
            .map_err(|e| anyhow::anyhow!("invalid --log-level `{directive}`: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    let journald = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let ansi = use_color(
        std::io::stderr().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let console = match format {
        LogFormat::Text => console
            .with_ansi(ansi)
            .with_writer(|| OneLine(std::io::stderr()))
            .map_event_format(|inner| Prioritized { inner, journald })
            .boxed(),
        LogFormat::Json => console
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .map_event_format(|inner| Prioritized { inner, journald })
            .boxed(),
    };
    let audit = crate::runlog::SupervisionLayer.with_filter(crate::runlog::audit_targets());
    tracing_subscriber::registry()
        .with(console.with_filter(filter))
        .with(audit)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    install_panic_hook();
    Ok(())
}

/// Whether to colour output: on a terminal, unless `NO_COLOR` is set to a non-empty value
/// (<https://no-color.org>). Used for the log and for the commands' own output.
pub fn use_color(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// The syslog priority prefix journald's stream protocol reads for `level` (sd-daemon.h's
/// `SD_ERR` `<3>`, `SD_WARNING` `<4>`, `SD_INFO` `<6>`, `SD_DEBUG` `<7>`; trace has no
/// priority of its own and is debug).
pub fn syslog_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Whether stderr is the journal stream: `journal_stream` (the value of `JOURNAL_STREAM`,
/// `<device>:<inode>` in decimal) names stderr's device and inode. systemd sets the variable
/// for a unit whose output goes to the journal; a process started from such a unit with
/// another stderr (a terminal, a file) inherits the variable but fails the match.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some(expected) = journal_stream.and_then(parse_journal_stream) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| (m.dev(), m.ino()) == expected)
}

/// `<device>:<inode>` as two numbers.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// An event formatter that starts each line with the syslog priority of its level when the
/// output is the journal stream, and adds nothing otherwise.
struct Prioritized<F> {
    inner: F,
    /// stderr is the journal stream ([`stderr_is_journal`]).
    journald: bool,
}

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if self.journald {
            writer.write_str(syslog_prefix(*event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// A text-log writer that keeps each event on one line: a newline or carriage return inside
/// an event (a panic message, a server's multi-line stderr, a value from the outside) is
/// written as `\n` / `\r`, so journald and line-based shippers never split or forge an
/// event. The fmt layer writes each event with one `write` of its whole line.
struct OneLine<W>(W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b => line.push(b),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let thread = std::thread::current();
        tracing::error!(
            panic = %message,
            %location,
            thread = thread.name().unwrap_or("unnamed"),
            "panic"
        );
    }));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::{LogFormat, OneLine, Prioritized, parse_journal_stream, use_color};

    #[test]
    fn an_event_stays_on_one_line() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"plain event\n").unwrap();
        out.write_all(b"panic=\"line one\nline two\r\" x=1\n")
            .unwrap();
        out.write_all(b"no newline at the end").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "plain event\npanic=\"line one\\nline two\\r\" x=1\nno newline at the end"
        );
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One event per level through the console formatter, as `format` with or without the
    /// journal prefix; the lines written.
    fn log_each_level(format: LogFormat, journald: bool) -> Vec<String> {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(match format {
            LogFormat::Text => layer
                .map_event_format(|inner| Prioritized { inner, journald })
                .boxed(),
            LogFormat::Json => layer
                .json()
                .flatten_event(true)
                .map_event_format(|inner| Prioritized { inner, journald })
                .boxed(),
        });
        tracing::subscriber::with_default(
            subscriber.with(tracing_subscriber::filter::LevelFilter::TRACE),
            || {
                tracing::error!("e");
                tracing::warn!("w");
                tracing::info!("i");
                tracing::debug!("d");
                tracing::trace!("t");
            },
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    use tracing_subscriber::Layer as _;

    #[test]
    fn journal_lines_start_with_the_syslog_priority_of_their_level() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let lines = log_each_level(format, true);
            let prefixes: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
            assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>", "<7>"], "{lines:#?}");
            if format == LogFormat::Json {
                // After the prefix (which journald strips) each line is still one JSON object.
                for line in &lines {
                    let v: serde_json::Value = serde_json::from_str(&line[3..]).unwrap();
                    assert!(v["level"].is_string(), "{line}");
                }
            }
        }
    }

    #[test]
    fn without_the_journal_there_is_no_prefix() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let lines = log_each_level(format, false);
            assert_eq!(lines.len(), 5);
            assert!(lines.iter().all(|l| !l.starts_with('<')), "{lines:#?}");
        }
    }

    #[test]
    fn journal_stream_is_device_colon_inode_and_must_name_stderr() {
        assert_eq!(parse_journal_stream("8:306630"), Some((8, 306630)));
        assert_eq!(parse_journal_stream(" 64769:12\n"), Some((64769, 12)));
        for bad in ["", "8", "8:", ":1", "a:b", "8:1:2", "-1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
        assert!(!super::stderr_is_journal(None));
        assert!(!super::stderr_is_journal(Some("garbage")));
        // No real stream has inode 0.
        assert!(!super::stderr_is_journal(Some("0:0")));
    }

    #[test]
    fn no_color_turns_colour_off_when_set_to_anything() {
        assert!(use_color(true, None));
        assert!(
            use_color(true, Some("")),
            "an empty NO_COLOR does not count"
        );
        assert!(!use_color(true, Some("1")));
        assert!(!use_color(false, None));
        assert!(!use_color(false, Some("1")));
    }
}
