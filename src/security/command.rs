//! Command rules of the security policy: what `shell` (and `git_operations`) may run.
//!
//! Part of [`crate::security::Policy`] (`policy.commands`), built once from `[security]`. The
//! checks are on the *parsed* command line, never on the raw string:
//! - [`tokenize`] is a POSIX-shell tokenizer (quotes, escapes, operators, redirections, `$( )`
//!   and backquote substitutions). Under `supervised` (and `read_only`) any shell syntax is
//!   refused (rule `shell_syntax`) and the words are run directly (`execve`, no shell). Under
//!   `full` the line may use operators, redirections and command substitutions and runs under
//!   `sh -c`, but every program of every simple command (inside substitutions too) is checked
//!   like a direct one; what cannot be checked safely (parameter expansion, here-documents,
//!   arithmetic, assignments, process substitution) is refused.
//! - [`CommandRules::check_argv`]: the program must be a bare name in `allowed_commands`
//!   (rule `allowed_commands`; a path to a program is refused), programs that run other
//!   programs (`xargs`, `sh`, `env CMD`, …) are refused, per-program deny tables refuse option
//!   smuggling (rule `option`: `git -c`, `find -exec`, `rg --pre`, `sort -o`, …; after `--`,
//!   for programs that honour it, arguments are operands), and every path-like operand is
//!   handed to the caller's path check (absolute, `~`, containing `..`, or naming an existing
//!   entry of the workspace, so a symlink that leads out is caught too).
//! - [`CommandRules::environment`]: the child's whole environment (nothing of the daemon's).

use std::path::Path;

use crate::config::{Autonomy, SecurityConfig};
use crate::security::Refusal;

/// The `PATH` every program runs with (and the one bare names are looked up in).
#[cfg(target_os = "macos")]
pub const SAFE_PATH: &str = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
/// The `PATH` every program runs with (and the one bare names are looked up in).
#[cfg(not(target_os = "macos"))]
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// The longest command line `shell` takes.
pub const MAX_LINE: usize = 64 * 1024;
/// How deep command substitutions may nest.
const MAX_DEPTH: usize = 8;

/// Programs whose operands are a program to run (they would bypass `allowed_commands`).
const RUNNERS: [&str; 34] = [
    "sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox", "xargs", "nice", "nohup",
    "timeout", "stdbuf", "setsid", "sudo", "doas", "su", "chroot", "flock", "ionice", "watch",
    "time", "strace", "ltrace", "eval", "exec", "command", "builtin", "parallel", "script",
    "unbuffer", "runuser", "pkexec",
];

/// Shell builtins that change what later commands of a line run or see (`PATH`, functions,
/// traps, aliases): refused even when listed.
const SHELL_STATE: [&str; 11] = [
    ".", "source", "trap", "alias", "export", "unset", "readonly", "declare", "typeset", "local",
    "hash",
];

/// Shell reserved words: as a "program" they would hide the real program behind them.
const RESERVED: [&str; 20] = [
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "function", "select", "{", "}", "!", "[[", "]]",
];

/// Options that make a program follow symlinks while it walks a tree (out of the workspace),
/// per program: long forms and short letters.
const FOLLOW: [(&str, &[&str], &[char]); 6] = [
    ("grep", &["--dereference-recursive"], &['R']),
    ("rg", &["--follow"], &['L']),
    ("find", &["-L", "-follow"], &[]),
    ("du", &["--dereference"], &['L']),
    ("ls", &["--dereference"], &['L']),
    ("tree", &[], &['l']),
];

/// git subcommands `shell` may run (aliases, `config`, `submodule`, `bisect run`, `difftool`,
/// `filter-branch` and the like are refused: they run programs or rewrite the config).
const GIT_SUBCOMMANDS: [&str; 37] = [
    "add",
    "blame",
    "branch",
    "checkout",
    "cherry-pick",
    "clone",
    "commit",
    "describe",
    "diff",
    "fetch",
    "grep",
    "init",
    "log",
    "ls-files",
    "ls-remote",
    "ls-tree",
    "merge",
    "merge-base",
    "mv",
    "pull",
    "push",
    "rebase",
    "reflog",
    "remote",
    "reset",
    "restore",
    "rev-list",
    "rev-parse",
    "revert",
    "rm",
    "shortlog",
    "show",
    "stash",
    "status",
    "switch",
    "tag",
    "version",
];

/// git global options that change which repository, config or programs git uses.
const GIT_GLOBAL_DENY: [&str; 9] = [
    "-c",
    "--config-env",
    "--exec-path",
    "--git-dir",
    "--work-tree",
    "-C",
    "--namespace",
    "--super-prefix",
    "--list-cmds",
];

/// git subcommand options that run a program, write a file outside the index or pick a pager.
const GIT_DENY: [&str; 14] = [
    "--upload-pack",
    "--receive-pack",
    "--exec",
    "--output",
    "--ext-diff",
    "--open-files-in-pager",
    "--config",
    "--template",
    "--separate-git-dir",
    "--strategy",
    "--strategy-option",
    "--gpg-sign",
    "--reference",
    "--paginate",
];

/// `find` actions that run a program, delete or write files.
const FIND_DENY: [&str; 10] = [
    "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls",
    "-D",
];

/// `rg` options that run a program (preprocessors, decompressors, a hostname program).
const RG_DENY: [&str; 4] = ["--pre", "--pre-glob", "--search-zip", "--hostname-bin"];

/// `sort` options that write a file or run a program.
const SORT_DENY: [&str; 3] = ["--output", "--compress-program", "--temporary-directory"];

/// What to run for a command line that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run this argv directly (the first element is a bare program name).
    Direct(Vec<String>),
    /// Run this line under `sh -c` (`autonomy = "full"` only): the programs it names.
    Shell {
        /// The line.
        line: String,
        /// Every program the line runs, in order.
        programs: Vec<String>,
    },
}

/// Compiled command rules.
#[derive(Debug, Default)]
pub struct CommandRules {
    allowed: Vec<String>,
    any: bool,
    autonomy: Autonomy,
}

/// The path check a caller supplies: `Ok` when the operand may be used.
pub type PathCheck<'a> = &'a dyn Fn(&str) -> Result<(), Refusal>;

impl CommandRules {
    /// Compiles the rules of `config`: every `allowed_commands` entry must be a bare program
    /// name (or `*`).
    pub fn new(config: &SecurityConfig) -> Result<Self, String> {
        for name in &config.allowed_commands {
            if name != "*"
                && (name.is_empty()
                    || name.contains('/')
                    || name.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(format!(
                    "security.allowed_commands: {name:?} is not a bare program name (no path, no \
                     spaces; programs are looked up in {SAFE_PATH})"
                ));
            }
        }
        Ok(Self {
            any: config.allowed_commands.iter().any(|n| n == "*"),
            allowed: config.allowed_commands.clone(),
            autonomy: config.autonomy,
        })
    }

    /// Whether `allowed_commands` lists `program` (or is `*`).
    pub fn allows(&self, program: &str) -> bool {
        self.any || self.allowed.iter().any(|a| a == program)
    }

    /// Checks a command line given as a string: parsed, then every program and its
    /// arguments checked ([`Self::check_argv`]); `paths` checks each path-like operand.
    pub fn check_line(&self, line: &str, paths: PathCheck<'_>) -> Result<Plan, Refusal> {
        if line.len() > MAX_LINE {
            return Err(Refusal::new(
                "shell_syntax",
                format!(
                    "the command line is {} bytes; the most is {MAX_LINE}",
                    line.len()
                ),
            ));
        }
        if line.contains('\0') {
            return Err(Refusal::new(
                "shell_syntax",
                "the command line contains a NUL byte",
            ));
        }
        if self.autonomy != Autonomy::Full {
            if line.contains(['\n', '\r']) {
                return Err(Refusal::new(
                    "shell_syntax",
                    "a newline in `command` is shell syntax (a second command); shell syntax \
                     needs autonomy \"full\" (pass one command, or `argv`)",
                ));
            }
            let tokens = tokenize(line, true)?;
            let argv: Vec<String> = tokens
                .into_iter()
                .map(|t| match t {
                    Token::Word(w) => Ok(w.text),
                    Token::Op(op) => Err(syntax(&format!("the operator `{op}`"))),
                })
                .collect::<Result<_, _>>()?;
            self.check_argv(&argv, paths)?;
            return Ok(Plan::Direct(argv));
        }
        let mut programs = Vec::new();
        self.check_full(line, paths, 0, &mut programs)?;
        if programs.is_empty() {
            return Err(Refusal::new(
                "allowed_commands",
                "the command line runs no program",
            ));
        }
        // A line that is one plain simple command runs directly, without a shell.
        if let Ok(tokens) = tokenize(line, true)
            && tokens.iter().all(|t| matches!(t, Token::Word(_)))
        {
            let argv = tokens
                .into_iter()
                .filter_map(|t| match t {
                    Token::Word(w) => Some(w.text),
                    Token::Op(_) => None,
                })
                .collect();
            return Ok(Plan::Direct(argv));
        }
        Ok(Plan::Shell {
            line: line.to_owned(),
            programs,
        })
    }

    /// `full`: every simple command of `line` (and of its substitutions) checked.
    fn check_full(
        &self,
        line: &str,
        paths: PathCheck<'_>,
        depth: usize,
        programs: &mut Vec<String>,
    ) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(syntax("command substitutions nested this deep"));
        }
        let tokens = tokenize(line, false)?;
        let mut argv: Vec<String> = Vec::new();
        let mut pending_redirect: Option<String> = None;
        let flush = |argv: &mut Vec<String>, programs: &mut Vec<String>| {
            if argv.is_empty() {
                return Ok(());
            }
            self.check_argv(argv, paths)?;
            programs.push(argv[0].clone());
            argv.clear();
            Ok::<(), Refusal>(())
        };
        for token in tokens {
            match token {
                Token::Word(word) => {
                    for inner in &word.substitutions {
                        self.check_full(inner, paths, depth + 1, programs)?;
                    }
                    if let Some(op) = pending_redirect.take() {
                        // `>&2`, `<&-`: a descriptor, not a file.
                        let dup = op.ends_with('&')
                            && (word.text == "-" || word.text.chars().all(|c| c.is_ascii_digit()));
                        if !dup {
                            if !word.substitutions.is_empty() || word.glob {
                                return Err(syntax(
                                    "a redirection target that is computed (a substitution or a \
                                     glob)",
                                ));
                            }
                            paths(&word.text)?;
                        }
                        continue;
                    }
                    if argv.is_empty() {
                        if word.glob || !word.substitutions.is_empty() {
                            return Err(syntax(
                                "a program name that is computed (a glob or a substitution)",
                            ));
                        }
                        if is_assignment(&word.text) {
                            return Err(syntax(&format!(
                                "the variable assignment `{}`",
                                word.text.split('=').next().unwrap_or_default()
                            )));
                        }
                    }
                    argv.push(word.text);
                }
                Token::Op(op) => match op {
                    ">" | ">>" | "<" | "<>" | ">|" | ">&" | "<&" => {
                        if pending_redirect.is_some() {
                            return Err(syntax("two redirections in a row"));
                        }
                        pending_redirect = Some(op.to_owned());
                    }
                    _ => {
                        if let Some(op) = pending_redirect.take() {
                            return Err(syntax(&format!("`{op}` without a target")));
                        }
                        if op == "(" && !argv.is_empty() {
                            return Err(syntax("a function definition"));
                        }
                        flush(&mut argv, programs)?;
                    }
                },
            }
        }
        if let Some(op) = pending_redirect {
            return Err(syntax(&format!("`{op}` without a target")));
        }
        flush(&mut argv, programs)
    }

    /// Checks one program and its arguments: the allowlist, runners, option smuggling and
    /// path-like operands.
    pub fn check_argv(&self, argv: &[String], paths: PathCheck<'_>) -> Result<(), Refusal> {
        let Some(program) = argv.first() else {
            return Err(Refusal::new("allowed_commands", "no program given"));
        };
        if RESERVED.contains(&program.as_str()) {
            return Err(syntax(&format!("the reserved word `{program}`")));
        }
        if program.contains('/') {
            return Err(Refusal::new(
                "allowed_commands",
                format!(
                    "`{}` is a path; give the bare name of a program in allowed_commands (it is \
                     looked up in {SAFE_PATH})",
                    shown(program)
                ),
            ));
        }
        if !self.allows(program) {
            return Err(Refusal::new(
                "allowed_commands",
                format!(
                    "`{}` is not in allowed_commands ({})",
                    shown(program),
                    self.allowed.join(", ")
                ),
            ));
        }
        if SHELL_STATE.contains(&program.as_str()) {
            return Err(Refusal::new(
                "allowed_commands",
                format!(
                    "`{program}` changes what later commands run or see (PATH, functions, \
                     traps), which would bypass the checks; it is refused even when listed"
                ),
            ));
        }
        if RUNNERS.contains(&program.as_str()) {
            return Err(Refusal::new(
                "allowed_commands",
                format!(
                    "`{program}` runs the programs it is given, which would bypass \
                     allowed_commands; it is refused even when listed"
                ),
            ));
        }
        let args = &argv[1..];
        check_options(program, args)?;
        // Operands (and option values) that name paths.
        let honours_dashdash = program != "find";
        let mut operands_only = false;
        for arg in args {
            if arg == "--" && honours_dashdash && !operands_only {
                operands_only = true;
                continue;
            }
            let candidate = if !operands_only && arg.starts_with('-') && arg.len() > 1 {
                match arg.split_once('=') {
                    Some((_, value)) => value,
                    None if !arg.starts_with("--") => match arg.char_indices().nth(2) {
                        Some((at, _)) => &arg[at..],
                        None => continue,
                    },
                    None => continue,
                }
            } else {
                arg.as_str()
            };
            if !candidate.is_empty() {
                paths(candidate)?;
            }
        }
        Ok(())
    }

    /// The whole environment of a child: a fixed `PATH`, `HOME` = the workspace (no program
    /// reads the daemon user's dotfiles or credentials), `USER`, `LANG`/`LC_ALL` =
    /// `C.UTF-8`, `TERM=dumb`, no pager, no prompts, and git settings that keep a repository's
    /// own config from running programs (hooks, fsmonitor, pager, editor, ssh, credential
    /// helpers, the `ext::` transport) and ignore the worktree's `.gitattributes` (filters,
    /// diff drivers). Nothing of the daemon's environment is passed on.
    pub fn environment(&self, workspace: &Path) -> Vec<(String, String)> {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_graphic()))
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| "revka".to_owned());
        let mut env: Vec<(String, String)> = [
            ("PATH", SAFE_PATH.to_owned()),
            ("HOME", workspace.display().to_string()),
            ("USER", user.clone()),
            ("LOGNAME", user),
            ("LANG", "C.UTF-8".to_owned()),
            ("LC_ALL", "C.UTF-8".to_owned()),
            ("TERM", "dumb".to_owned()),
            ("PAGER", "cat".to_owned()),
            ("GIT_PAGER", "cat".to_owned()),
            ("GIT_EDITOR", "true".to_owned()),
            ("GIT_SEQUENCE_EDITOR", "true".to_owned()),
            ("GIT_TERMINAL_PROMPT", "0".to_owned()),
            ("GIT_CONFIG_NOSYSTEM", "1".to_owned()),
            ("GIT_ASKPASS", "true".to_owned()),
            ("SSH_ASKPASS", "true".to_owned()),
            // The empty tree: `.gitattributes` of the worktree name no filter or diff driver.
            (
                "GIT_ATTR_SOURCE",
                "4b825dc642cb6eb9a060e54bf8d69288fbee4904".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let overrides = GIT_OVERRIDES;
        env.push(("GIT_CONFIG_COUNT".to_owned(), overrides.len().to_string()));
        for (i, (key, value)) in overrides.iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), (*key).to_owned()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), (*value).to_owned()));
        }
        env
    }

    /// The absolute path of the bare program `name` in [`SAFE_PATH`], if it is there.
    pub fn locate(name: &str) -> Option<std::path::PathBuf> {
        locate(name)
    }
}

/// git config every child gets (over any repository's own): no program runs from config.
/// (`diff.external` cannot be unset this way, an empty value is run as a program: direct `git`
/// runs get `--no-ext-diff` from [`harden`], `git_operations` passes it itself.)
pub const GIT_OVERRIDES: [(&str, &str); 10] = [
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("core.sshCommand", "false"),
    ("core.askPass", "true"),
    ("sequence.editor", "true"),
    ("credential.helper", ""),
    ("protocol.ext.allow", "never"),
    ("gpg.program", "false"),
];

/// Rewrites a checked direct argv so a repository's config cannot run a program through it:
/// `git diff|log|show` get `--no-ext-diff --no-textconv` right after the subcommand.
pub fn harden(argv: &mut Vec<String>) {
    if argv.first().map(String::as_str) != Some("git") {
        return;
    }
    let Some(at) = argv.iter().skip(1).position(|a| !a.starts_with('-')) else {
        return;
    };
    let at = at + 1;
    if matches!(argv[at].as_str(), "diff" | "log" | "show") {
        argv.splice(
            at + 1..at + 1,
            ["--no-ext-diff".to_owned(), "--no-textconv".to_owned()],
        );
    }
}

/// The absolute path of the bare program `name` in [`SAFE_PATH`], if it is there.
pub fn locate(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    SAFE_PATH.split(':').find_map(|dir| {
        let candidate = Path::new(dir).join(name);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// The per-program deny tables (rule `option`).
fn check_options(program: &str, args: &[String]) -> Result<(), Refusal> {
    if let Some((_, long, short)) = FOLLOW.iter().find(|(p, ..)| *p == program) {
        for arg in args {
            if arg == "--" && program != "find" {
                break;
            }
            let denied = long.iter().any(|l| {
                if l.starts_with("--") {
                    denied_long(arg, &[l])
                } else {
                    arg == l
                }
            }) || (program != "find"
                && short.iter().any(|c| short_cluster_has(arg, *c)));
            if denied {
                return Err(option(
                    program,
                    arg,
                    "follows symlinks while walking the tree, out of the workspace",
                ));
            }
        }
    }
    match program {
        "date" => {
            let mut value_next = false;
            for arg in args {
                if std::mem::take(&mut value_next) {
                    continue;
                }
                if matches!(
                    arg.as_str(),
                    "-d" | "-f" | "-r" | "--date" | "--file" | "--reference"
                ) {
                    value_next = true;
                    continue;
                }
                let sets = denied_long(arg, &["--set"])
                    || short_cluster_has(arg, 's')
                    || (!arg.starts_with('-') && !arg.starts_with('+'));
                if sets {
                    return Err(option(program, arg, "sets the system clock"));
                }
            }
            Ok(())
        }
        "git" => check_git(args),
        "find" => {
            for arg in args {
                if FIND_DENY.contains(&arg.as_str()) {
                    return Err(option(
                        program,
                        arg,
                        "runs a program, deletes or writes files",
                    ));
                }
            }
            Ok(())
        }
        "rg" => {
            let mut operands = false;
            for arg in args {
                if operands {
                    continue;
                }
                if arg == "--" {
                    operands = true;
                } else if denied_long(arg, &RG_DENY) || short_cluster_has(arg, 'z') {
                    return Err(option(program, arg, "runs another program on the files"));
                }
            }
            Ok(())
        }
        "sort" => {
            let mut operands = false;
            for arg in args {
                if operands {
                    continue;
                }
                if arg == "--" {
                    operands = true;
                } else if denied_long(arg, &SORT_DENY)
                    || short_cluster_has(arg, 'o')
                    || short_cluster_has(arg, 'T')
                {
                    return Err(option(
                        program,
                        arg,
                        "writes a file or runs a compression program",
                    ));
                }
            }
            Ok(())
        }
        "env" | "printenv" => {
            for arg in args {
                if arg.starts_with('-') && arg != "-0" && arg != "--null" {
                    return Err(option(program, arg, "changes what runs or where"));
                }
                if program == "env" && !arg.starts_with('-') && !arg.contains('=') {
                    return Err(Refusal::new(
                        "allowed_commands",
                        format!(
                            "`env {}` would run a program, which would bypass allowed_commands",
                            shown(arg)
                        ),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// git: global options, the subcommand, its options.
fn check_git(args: &[String]) -> Result<(), Refusal> {
    let mut rest = args.iter();
    let mut subcommand = None;
    for arg in rest.by_ref() {
        if !arg.starts_with('-') {
            subcommand = Some(arg.as_str());
            break;
        }
        if denied_long(arg, &GIT_GLOBAL_DENY) || denied_long(arg, &GIT_DENY) || arg == "-p" {
            return Err(option(
                "git",
                arg,
                "changes the repository, config, pager or programs git uses",
            ));
        }
        if matches!(arg.as_str(), "--version" | "--help" | "-h") {
            return Ok(());
        }
        if !matches!(
            arg.as_str(),
            "--no-pager" | "-P" | "--no-replace-objects" | "--literal-pathspecs" | "--bare"
        ) {
            return Err(option(
                "git",
                arg,
                "is not a global option git_operations allows (only --no-pager, \
                 --no-replace-objects, --literal-pathspecs)",
            ));
        }
    }
    let Some(subcommand) = subcommand else {
        return Ok(());
    };
    if !GIT_SUBCOMMANDS.contains(&subcommand) {
        return Err(Refusal::new(
            "option",
            format!(
                "`git {}` is not an allowed git subcommand (aliases, config, submodule, bisect \
                 and the like may run programs); allowed: {}",
                shown(subcommand),
                GIT_SUBCOMMANDS.join(", ")
            ),
        ));
    }
    for arg in rest {
        if arg == "--" {
            break;
        }
        let short_deny: &[char] = match subcommand {
            "fetch" | "clone" | "ls-remote" => &['u', 'c'],
            "pull" => &['u', 'c', 's', 'X', 'S'],
            "rebase" => &['x', 's', 'X', 'S'],
            "grep" => &['O'],
            "merge" | "cherry-pick" | "revert" => &['s', 'X', 'S'],
            "commit" => &['S'],
            "tag" => &['s', 'S', 'u'],
            _ => &[],
        };
        let denied_short = arg.starts_with('-')
            && !arg.starts_with("--")
            && short_deny.iter().any(|c| short_cluster_has(arg, *c));
        if denied_long(arg, &GIT_DENY) || denied_short {
            return Err(option(
                &format!("git {subcommand}"),
                arg,
                "runs a program, writes outside the repository or changes the config",
            ));
        }
        if subcommand == "grep" && arg.starts_with("--open-files") {
            return Err(option("git grep", arg, "opens the files in a pager"));
        }
    }
    Ok(())
}

/// Whether `arg` is one of `deny` (`--opt`, `--opt=value`, or an unambiguous prefix of a long
/// option, as getopt accepts; `-c` style entries match exactly).
fn denied_long(arg: &str, deny: &[&str]) -> bool {
    let name = arg.split('=').next().unwrap_or(arg);
    deny.iter().any(|d| {
        if d.starts_with("--") {
            // getopt_long accepts an unambiguous prefix (`--pre` for `--pre-glob`): refuse
            // any prefix of at least `--xy`.
            name == *d || (name.len() >= 3 && name.starts_with("--") && d.starts_with(name))
        } else {
            // A short option, maybe with its value attached (`-ccore.pager=x`, `-C/tmp`).
            arg == *d || (d.len() == 2 && arg.starts_with(d) && !arg.starts_with("--"))
        }
    })
}

/// Whether `arg` is a cluster of short options (`-ro`) that holds `letter`.
fn short_cluster_has(arg: &str, letter: char) -> bool {
    arg.len() > 1
        && arg.starts_with('-')
        && !arg.starts_with("--")
        && arg[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .any(|c| c == letter)
}

fn option(program: &str, arg: &str, what: &str) -> Refusal {
    Refusal::new(
        "option",
        format!(
            "`{program} {}` is refused: the option {what}",
            shown(arg.split('=').next().unwrap_or(arg))
        ),
    )
}

fn syntax(what: &str) -> Refusal {
    Refusal::new(
        "shell_syntax",
        format!(
            "{what} is shell syntax; no shell runs the command unless autonomy is \"full\" \
             (then only what can be checked: operators, redirections, $( ) and backquotes)"
        ),
    )
}

/// A word for a message: at most 64 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// One word of a command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word {
    /// Its value after quote removal.
    pub text: String,
    /// Whether any part of it was quoted.
    pub quoted: bool,
    /// Whether it holds an unquoted glob character (`*`, `?`, `[`).
    pub glob: bool,
    /// The command lines of its `$( )` and backquote substitutions.
    pub substitutions: Vec<String>,
}

/// A token of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word.
    Word(Word),
    /// An operator (`;`, `&&`, `|`, `>`, `(`, a newline as `\n`, …).
    Op(&'static str),
}

/// Splits `line` into words and operators the way a POSIX shell does. With `strict`, any
/// shell syntax (an operator, a substitution, an expansion, a comment) is refused with rule
/// `shell_syntax` naming it; without, operators are returned and `$( )`/backquote
/// substitutions are kept for checking, while what cannot be checked is refused.
pub fn tokenize(line: &str, strict: bool) -> Result<Vec<Token>, Refusal> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut word: Option<Word> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
                i += 1;
            }
            '\'' => {
                let w = word.get_or_insert_with(Word::default);
                w.quoted = true;
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or_else(|| unterminated("a single quote"))?;
                w.text.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                let w = word.get_or_insert_with(Word::default);
                w.quoted = true;
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(unterminated("a double quote"));
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            match chars.get(i + 1) {
                                Some(&n @ ('$' | '`' | '"' | '\\')) => w.text.push(n),
                                Some('\n') => {}
                                Some(&n) => {
                                    w.text.push('\\');
                                    w.text.push(n);
                                }
                                None => return Err(unterminated("a double quote")),
                            }
                            i += 2;
                        }
                        '$' => i = dollar(&chars, i, strict, w)?,
                        '`' => i = backquote(&chars, i, strict, w)?,
                        c => {
                            w.text.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(Word::default);
                w.quoted = true;
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&n) => w.text.push(n),
                    None => return Err(syntax("a trailing backslash")),
                }
                i += 2;
            }
            '$' => {
                let w = word.get_or_insert_with(Word::default);
                i = dollar(&chars, i, strict, w)?;
            }
            '`' => {
                let w = word.get_or_insert_with(Word::default);
                i = backquote(&chars, i, strict, w)?;
            }
            '#' if word.is_none() => {
                if strict {
                    return Err(syntax("a comment (`#` at the start of a word)"));
                }
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\n' | '\r' => {
                // An all-digit word right before a redirection is its descriptor (`2>`).
                let io_number = matches!(c, '<' | '>')
                    && word
                        .as_ref()
                        .is_some_and(|w| !w.quoted && w.text.chars().all(|c| c.is_ascii_digit()));
                if io_number {
                    word = None;
                } else if let Some(w) = word.take() {
                    tokens.push(Token::Word(w));
                }
                let next = chars.get(i + 1).copied();
                let next2 = chars.get(i + 2).copied();
                let (op, len): (&'static str, usize) = match (c, next, next2) {
                    (';', Some(';'), _) => (";;", 2),
                    (';', _, _) => (";", 1),
                    ('&', Some('&'), _) => ("&&", 2),
                    ('&', Some('>'), _) => ("&>", 2),
                    ('&', _, _) => ("&", 1),
                    ('|', Some('|'), _) => ("||", 2),
                    ('|', Some('&'), _) => ("|&", 2),
                    ('|', _, _) => ("|", 1),
                    ('<', Some('<'), _) => ("<<", 2),
                    ('<', Some('&'), _) => ("<&", 2),
                    ('<', Some('>'), _) => ("<>", 2),
                    ('<', Some('('), _) => ("<(", 2),
                    ('<', _, _) => ("<", 1),
                    ('>', Some('>'), _) => (">>", 2),
                    ('>', Some('&'), _) => (">&", 2),
                    ('>', Some('|'), _) => (">|", 2),
                    ('>', Some('('), _) => (">(", 2),
                    ('>', _, _) => (">", 1),
                    ('(', _, _) => ("(", 1),
                    (')', _, _) => (")", 1),
                    _ => ("\n", 1),
                };
                if strict {
                    let what = match op {
                        "\n" => "a newline".to_owned(),
                        op => format!("the operator `{op}`"),
                    };
                    return Err(syntax(&what));
                }
                match op {
                    ";;" | "<<" | "<(" | ">(" | "&>" | "|&" => {
                        return Err(syntax(&format!(
                            "`{op}` (a here-document, process substitution or bash-only form) \
                             cannot be checked and"
                        )));
                    }
                    _ => {}
                }
                tokens.push(Token::Op(op));
                i += len;
            }
            '*' | '?' | '[' => {
                let w = word.get_or_insert_with(Word::default);
                w.glob = true;
                w.text.push(c);
                i += 1;
            }
            c => {
                word.get_or_insert_with(Word::default).text.push(c);
                i += 1;
            }
        }
    }
    if let Some(w) = word.take() {
        tokens.push(Token::Word(w));
    }
    Ok(tokens)
}

fn unterminated(what: &str) -> Refusal {
    Refusal::new(
        "shell_syntax",
        format!("{what} is not closed in the command line"),
    )
}

/// `$` at `i`: a command substitution `$( )` (kept), a lone `$` (literal), or an expansion
/// (refused). Returns the index after it.
fn dollar(chars: &[char], i: usize, strict: bool, w: &mut Word) -> Result<usize, Refusal> {
    match chars.get(i + 1) {
        Some('(') if chars.get(i + 2) == Some(&'(') => Err(syntax("arithmetic expansion `$((`")),
        Some('(') => {
            if strict {
                return Err(syntax("the command substitution `$(`"));
            }
            let end = closing_paren(chars, i + 2)?;
            w.substitutions.push(chars[i + 2..end].iter().collect());
            // The substitution's output is unknown: treat the word as computed.
            w.text.push_str("$(…)");
            Ok(end + 1)
        }
        Some(c) if c.is_ascii_alphanumeric() || "_{@*#?$!-".contains(*c) => {
            let what = if *c == '{' {
                "the parameter expansion `${`".to_owned()
            } else {
                format!("the parameter expansion `${c}`")
            };
            if strict {
                Err(syntax(&what))
            } else {
                Err(Refusal::new(
                    "shell_syntax",
                    format!(
                        "{what} cannot be checked (its value is unknown until the shell runs); \
                         write the value itself"
                    ),
                ))
            }
        }
        Some('\'') | Some('"') => Err(syntax("`$'…'` or `$\"…\"` quoting")),
        _ => {
            w.text.push('$');
            Ok(i + 1)
        }
    }
}

/// A backquote substitution at `i` (kept for checking). Returns the index after it.
fn backquote(chars: &[char], i: usize, strict: bool, w: &mut Word) -> Result<usize, Refusal> {
    if strict {
        return Err(syntax("the backquote command substitution"));
    }
    let end = chars[i + 1..]
        .iter()
        .position(|&c| c == '`')
        .map(|p| p + i + 1)
        .ok_or_else(|| unterminated("a backquote"))?;
    let inner: String = chars[i + 1..end].iter().collect();
    if inner.contains('\\') {
        return Err(syntax(
            "a backslash inside backquotes (use `$( )`) cannot be checked and",
        ));
    }
    w.substitutions.push(inner);
    w.text.push_str("`…`");
    Ok(end + 1)
}

/// The index of the `)` closing a `$(` whose content starts at `start` (quotes respected).
fn closing_paren(chars: &[char], start: usize) -> Result<usize, Refusal> {
    let mut depth = 1usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '\'' => {
                i += chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or_else(|| unterminated("a single quote"))?
                    + 1;
            }
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(unterminated("a double quote"));
                }
                i = j;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(unterminated("a `$(`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(autonomy: Autonomy, allowed: &[&str]) -> CommandRules {
        CommandRules::new(&SecurityConfig {
            autonomy,
            allowed_commands: allowed.iter().map(|s| (*s).to_owned()).collect(),
            ..SecurityConfig::default()
        })
        .unwrap()
    }

    fn no_paths(_: &str) -> Result<(), Refusal> {
        Ok(())
    }

    fn refused(r: &CommandRules, line: &str) -> Refusal {
        r.check_line(line, &no_paths).unwrap_err()
    }

    #[test]
    fn supervised_refuses_every_shell_syntax() {
        let r = rules(Autonomy::Supervised, &["ls", "echo", "cat"]);
        for line in [
            "ls; cat x",
            "ls && cat x",
            "ls || cat x",
            "ls | cat",
            "ls &",
            "echo `id`",
            "echo $(id)",
            "echo ${HOME}",
            "echo $HOME",
            "ls > out",
            "cat < in",
            "ls\ncat x",
            "ls\rcat",
            "echo \"$(id)\"",
            "# comment",
            "(ls)",
        ] {
            assert_eq!(refused(&r, line).rule, "shell_syntax", "{line}");
        }
        // Quoted metacharacters are data: no shell runs.
        assert_eq!(
            r.check_line("echo 'a;b|c' \"d&e\" f\\;g *", &no_paths)
                .unwrap(),
            Plan::Direct(vec![
                "echo".into(),
                "a;b|c".into(),
                "d&e".into(),
                "f;g".into(),
                "*".into()
            ])
        );
    }

    #[test]
    fn programs_must_be_listed_bare_names() {
        let r = rules(Autonomy::Supervised, &["ls"]);
        assert_eq!(refused(&r, "rm -rf x").rule, "allowed_commands");
        assert_eq!(refused(&r, "/bin/ls").rule, "allowed_commands");
        assert_eq!(refused(&r, "./ls").rule, "allowed_commands");
        let star = rules(Autonomy::Supervised, &["*"]);
        assert_eq!(refused(&star, "xargs rm").rule, "allowed_commands");
        assert_eq!(refused(&star, "sh -c id").rule, "allowed_commands");
        assert_eq!(refused(&star, "env rm x").rule, "allowed_commands");
        star.check_line("env", &no_paths).unwrap();
        assert!(
            CommandRules::new(&SecurityConfig {
                allowed_commands: vec!["/bin/ls".into()],
                ..SecurityConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn option_smuggling_is_refused() {
        let r = rules(Autonomy::Supervised, &["git", "find", "rg", "sort"]);
        for line in [
            "git -c core.pager=id log",
            "git -ccore.pager=id log",
            "git --config-env=core.pager=X log",
            "git --exec-path=/tmp status",
            "git --git-dir=/x status",
            "git --work-tree=/x status",
            "git -C /tmp status",
            "git fetch --upload-pack=id origin",
            "git fetch -u id origin",
            "git push --receive-pack=id",
            "git diff --output=x",
            "git diff --ext-diff",
            "git grep -O foo",
            "git grep --open-files-in-pager foo",
            "git rebase -x id",
            "git rebase --exec=id",
            "git lg",
            "git config core.pager id",
            "git submodule foreach id",
            "find . -exec id ';'",
            "find . -execdir id \\;",
            "find . -ok id ';'",
            "find . -delete",
            "find -- . -exec id ';'",
            "find . -fprint x",
            "rg --pre id foo",
            "rg --pre=id foo",
            "rg --pre-glob '*' foo",
            "rg --pr id foo",
            "rg -z foo",
            "sort -o out in",
            "sort -ro out in",
            "sort --output=out in",
            "sort --compress-program=id in",
        ] {
            assert_eq!(refused(&r, line).rule, "option", "{line}");
        }
        let more = rules(
            Autonomy::Supervised,
            &["grep", "rg", "find", "du", "ls", "date"],
        );
        for line in [
            "grep -R x .",
            "grep -rR x .",
            "grep --dereference-recursive x .",
            "rg -L x",
            "rg --follow x",
            "find -L .",
            "find . -follow",
            "du -L .",
            "ls -lL",
            "date -s 2020-01-01",
            "date --set=2020-01-01",
            "date 010100002020",
        ] {
            assert_eq!(refused(&more, line).rule, "option", "{line}");
        }
        more.check_line("date +%Y", &no_paths).unwrap();
        more.check_line("date -d yesterday +%F", &no_paths).unwrap();
        more.check_line("grep -rn x .", &no_paths).unwrap();
        assert_eq!(refused(&r, "git diff --out=x").rule, "option");
        r.check_line("git -P log", &no_paths).unwrap();
        // After `--`, arguments are operands.
        r.check_line("rg -- --pre foo", &no_paths).unwrap();
        r.check_line("sort -- -o", &no_paths).unwrap();
        r.check_line("git log -- --output=x", &no_paths).unwrap();
        r.check_line("git add -u", &no_paths).unwrap();
        r.check_line("git log --oneline -n 3", &no_paths).unwrap();
    }

    #[test]
    fn path_operands_reach_the_check() {
        let r = rules(Autonomy::Supervised, &["cat", "grep"]);
        let seen = std::cell::RefCell::new(Vec::new());
        let check = |p: &str| {
            seen.borrow_mut().push(p.to_owned());
            if p.starts_with('/') {
                Err(Refusal::new("workspace_only", "out"))
            } else {
                Ok(())
            }
        };
        assert_eq!(
            r.check_line("cat /etc/passwd", &check).unwrap_err().rule,
            "workspace_only"
        );
        assert_eq!(
            r.check_line("grep -f/etc/shadow x", &check)
                .unwrap_err()
                .rule,
            "workspace_only"
        );
        assert_eq!(
            r.check_line("grep --file=/etc/shadow x", &check)
                .unwrap_err()
                .rule,
            "workspace_only"
        );
        r.check_line("grep -n foo ../x", &check).unwrap();
        assert!(seen.borrow().contains(&"../x".to_owned()));
    }

    #[test]
    fn full_checks_every_program_of_the_line() {
        let r = rules(Autonomy::Full, &["ls", "grep", "echo", "wc", "cat"]);
        let plan = r
            .check_line(
                "ls | grep x && echo \"$(wc -l < f)\" > out; cat `ls`",
                &no_paths,
            )
            .unwrap();
        match plan {
            Plan::Shell { programs, .. } => {
                assert_eq!(programs, ["ls", "grep", "wc", "echo", "ls", "cat"])
            }
            other => panic!("{other:?}"),
        }
        for line in [
            "ls; rm -rf x",
            "ls && rm x",
            "ls | sh",
            "echo $(rm x)",
            "echo `rm x`",
            "echo \"$(rm x)\"",
            "echo $(echo $(rm x))",
        ] {
            assert_eq!(refused(&r, line).rule, "allowed_commands", "{line}");
        }
        let star = rules(Autonomy::Full, &["*"]);
        for line in [
            "if true; then sh -c id; fi",
            "f() { sh -c id; }; f",
            "{ sh -c id; }",
            "! sh",
        ] {
            assert_eq!(refused(&star, line).rule, "shell_syntax", "{line}");
        }
        for line in [
            "export PATH=.; ls",
            ". ./evil",
            "trap 'id' EXIT",
            "sh -c id",
        ] {
            assert_eq!(refused(&star, line).rule, "allowed_commands", "{line}");
        }
        for line in [
            "echo $HOME",
            "echo ${PATH}",
            "X=1 ls",
            "$(echo ls)",
            "cat <<EOF",
            "echo $((1+2))",
            "cat <(ls)",
            "echo 'unterminated",
        ] {
            assert_eq!(refused(&r, line).rule, "shell_syntax", "{line}");
        }
        // A redirection target is a path operand.
        let check = |p: &str| {
            if p.starts_with('/') {
                Err(Refusal::new("workspace_only", "out"))
            } else {
                Ok(())
            }
        };
        assert_eq!(
            r.check_line("echo x > /etc/passwd", &check)
                .unwrap_err()
                .rule,
            "workspace_only"
        );
        r.check_line("ls 2>&1 | cat", &check).unwrap();
        // A plain command runs without a shell even under full.
        assert_eq!(
            r.check_line("ls -l", &no_paths).unwrap(),
            Plan::Direct(vec!["ls".into(), "-l".into()])
        );
    }

    #[test]
    fn the_environment_is_fresh() {
        let r = rules(Autonomy::Supervised, &["ls"]);
        let env = r.environment(Path::new("/w"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some(SAFE_PATH));
        assert_eq!(get("HOME"), Some("/w"));
        assert_eq!(get("LC_ALL"), Some("C.UTF-8"));
        assert_eq!(get("TERM"), Some("dumb"));
        assert_eq!(get("GIT_CONFIG_KEY_0"), Some("core.hooksPath"));
        assert!(get("REVKA_HOME").is_none());
    }

    #[test]
    fn direct_git_diffs_run_no_external_program() {
        let mut argv: Vec<String> = ["git", "--no-pager", "diff", "HEAD"]
            .map(String::from)
            .to_vec();
        harden(&mut argv);
        assert_eq!(
            argv,
            [
                "git",
                "--no-pager",
                "diff",
                "--no-ext-diff",
                "--no-textconv",
                "HEAD"
            ]
        );
        let mut other: Vec<String> = ["git", "status"].map(String::from).to_vec();
        harden(&mut other);
        assert_eq!(other, ["git", "status"]);
    }
}
