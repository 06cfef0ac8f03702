//! What logs and introspection may show of a server's URL and command line: the one rule.
//!
//! Used wherever a target reaches a log line or a status detail: the connection actors'
//! details under `root/mcp_servers/mcp:<name>` and their `process` child, the process actor's
//! start line, the HTTP transports' errors and log lines (which become failure reasons, hence
//! `/api/health`, the daemon log and the run log), and the config's error messages. The daemon
//! shows the config's *unexpanded* form (`${API_KEY}`, not its value) and passes it through
//! these functions; values that come from elsewhere (a discovered endpoint, a spec built in
//! code) are passed through them as they are.
//!
//! The rule, applied to every string shown:
//!
//! - **Variable references are kept**: `${NAME}` says where a value comes from, not what it is.
//! - **URLs** ([`url()`]): the userinfo (`user:password@`) becomes `***@`, every query value
//!   becomes `***` (`?api_key=***&v=***`; the names stay), the fragment is dropped, and the
//!   host and path are checked like any text. URLs are split as text, not parsed: an
//!   unexpanded one (`https://${HOST}/mcp`) need not be a valid URL yet.
//! - **Arguments** ([`args`]): the value of an option whose name looks secret (`--api-key=V`,
//!   `--token V`, `-p V` is not: one-letter options are not guessed) becomes `***`, as does
//!   the value of `NAME=V` and `Name: V` when the name looks secret. A name looks secret when
//!   it contains (case-insensitively) `key`, `token`, `secret`, `password`, `passwd`,
//!   `credential`, `auth`, `bearer`, `cookie` or `signature`. An argument that is a URL, or
//!   an option whose value is one, follows the URL rule.
//! - **Random-looking runs** ([`text`]): any run of at least [`MIN_SECRET_RUN`] ASCII letters
//!   and digits with both kinds and at least [`MIN_DISTINCT`] different characters (an API key,
//!   a hex token, a JWT's parts) becomes `***`; what surrounds it stays (`sk-proj-***`).
//!   Words, paths, versions and UUIDs are shorter runs or lack digits, and stay.
//!
//! Header values and environment values are never shown at all (not by this module: the
//! details list header and variable names only).

#[cfg(test)]
mod tests;

/// What replaces a hidden value.
pub const MASK: &str = "***";

/// The shortest run of letters and digits that can look random enough to be a secret.
pub const MIN_SECRET_RUN: usize = 16;

/// The fewest different characters such a run must have (`aaaa…1111` is not a secret).
pub const MIN_DISTINCT: usize = 8;

/// Words that make an option, variable or header name look like it names a secret.
const SECRET_WORDS: [&str; 10] = [
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "auth",
    "bearer",
    "cookie",
    "signature",
];

/// Whether a name (an option without its dashes, a variable, a header, a query key) looks
/// like it names a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| lower.contains(word))
}

/// `url` as it may be shown: userinfo and query values masked, no fragment, host and path
/// shown by [`text`]. A string without `://` is shown as [`text`] shows it.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return text(url);
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let mut shown = format!("{}://", text(scheme));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => {
            shown.push_str(MASK);
            shown.push('@');
            host
        }
        None => authority,
    };
    shown.push_str(&text(host));
    shown.push_str(&text(path));
    if let Some(query) = query {
        shown.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if is_reference(&decoded(value)) => {
                    format!("{}={value}", text(name))
                }
                Some((name, _)) => format!("{}={MASK}", text(name)),
                None => text(pair),
            })
            .collect();
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// A command line's arguments as they may be shown (see the module documentation).
pub fn args(args: &[String]) -> Vec<String> {
    let mut shown = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args {
        if std::mem::take(&mut mask_next) && !is_reference(arg) && !arg.starts_with('-') {
            shown.push(MASK.to_owned());
            continue;
        }
        if let Some(name) = long_option(arg) {
            mask_next = is_secret_name(name);
            shown.push(arg.clone());
            continue;
        }
        shown.push(self::arg(arg));
    }
    shown
}

/// `program arg…` as one display string, arguments shown by [`args`].
pub fn command_line(program: &str, arguments: &[String]) -> String {
    std::iter::once(text(program))
        .chain(args(arguments))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One argument on its own: `--name=value` or `NAME=value`, a URL, `Name: value`, or text.
fn arg(arg: &str) -> String {
    let named = |separator: &str| {
        let (name, value) = arg.split_once(separator)?;
        let bare = name.trim_start_matches('-');
        let is_name = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        is_name.then_some((name, bare, value))
    };
    let shown = |name: &str, bare: &str, separator: &str, value: &str| {
        let value = if is_secret_name(bare) && !is_reference(value) {
            MASK.to_owned()
        } else {
            url(value)
        };
        format!("{name}{separator}{value}")
    };
    if let Some((name, bare, value)) = named("=") {
        return shown(name, bare, "=", value);
    }
    if arg.contains("://") {
        return url(arg);
    }
    for separator in [": ", ":"] {
        if let Some((name, bare, value)) = named(separator) {
            return shown(name, bare, separator, value);
        }
    }
    text(arg)
}

/// The option name of a long option given alone (`--api-key`, not `--api-key=v` nor `-k`),
/// whose value is the next argument.
fn long_option(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix("--")?;
    (!name.is_empty() && !name.contains('=')).then_some(name)
}

/// `text` with every random-looking run of letters and digits masked; `${NAME}` references
/// are kept whole.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${")
            && let Some(end) = after.find('}')
        {
            out.push_str(&rest[..end + 3]);
            rest = &after[end + 1..];
            continue;
        }
        let run = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        if run == 0 {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (word, tail) = rest.split_at(run);
        out.push_str(if looks_random(word) { MASK } else { word });
        rest = tail;
    }
    out
}

/// Whether a run of ASCII letters and digits looks like a generated secret.
pub fn looks_random(run: &str) -> bool {
    if run.len() < MIN_SECRET_RUN {
        return false;
    }
    let digits = run.bytes().any(|b| b.is_ascii_digit());
    let letters = run.bytes().any(|b| b.is_ascii_alphabetic());
    let mut seen = [false; 128];
    let mut distinct = 0;
    for b in run.bytes() {
        let slot = &mut seen[usize::from(b & 0x7f)];
        if !*slot {
            *slot = true;
            distinct += 1;
        }
    }
    digits && letters && distinct >= MIN_DISTINCT
}

/// Whether `value` is exactly one `${NAME}` reference.
fn is_reference(value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A query value percent-decoded (for the reference check only).
fn decoded(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

/// A server's target as logs and introspection show it: built through the rule above, so it
/// can be shown anywhere without another thought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown(Target);

/// What [`Shown`] holds, already masked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Command { command: String, args: Vec<String> },
    Url(String),
}

impl Shown {
    /// A command line (`command` as [`text`] shows it, `args` as [`args`] does).
    pub fn command(command: &str, arguments: &[String]) -> Self {
        Self(Target::Command {
            command: text(command),
            args: args(arguments),
        })
    }

    /// A URL, as [`url()`] shows it.
    pub fn url(target: &str) -> Self {
        Self(Target::Url(url(target)))
    }

    /// The URL, for a URL target.
    pub fn as_url(&self) -> Option<&str> {
        match &self.0 {
            Target::Url(url) => Some(url),
            Target::Command { .. } => None,
        }
    }

    /// One line: `command arg…`, or the URL.
    pub fn line(&self) -> String {
        match &self.0 {
            Target::Command { command, args } => std::iter::once(command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Target::Url(url) => url.clone(),
        }
    }

    /// The status-detail form: `{"command": …, "args": […]}` or `{"url": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.0 {
            Target::Command { command, args } => {
                serde_json::json!({ "command": command, "args": args })
            }
            Target::Url(url) => serde_json::json!({ "url": url }),
        }
    }
}
