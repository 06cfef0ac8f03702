//! Logging: tracing to stderr, one event per line, for terminals, journals and log shippers.
//!
//! The filter comes from `--log-level` if given, else `RUST_LOG`, else `info`. Text output is
//! coloured only when stderr is a terminal (the journal gets plain lines), and a newline inside
//! an event is escaped so an event is always one line; `--log-format json`
//! writes one JSON object per line. Every event about a supervised child carries its `path`
//! field. A panic hook routes panics (including those caught inside actors) through tracing.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
/// (`debug`, `revka=debug,ractor=warn`, ...). Supervision events also go to the run log (once
/// the daemon opens it), with their own filter, whatever the console level.
pub fn init(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match level {
        Some(directive) => EnvFilter::try_new(directive)
            .map_err(|e| anyhow::anyhow!("invalid --log-level `{directive}`: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let console = match format {
        LogFormat::Text => console
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(|| OneLine(std::io::stderr()))
            .boxed(),
        LogFormat::Json => console
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
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

    use super::OneLine;

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
}
