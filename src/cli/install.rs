//! `revka install --sidecars-only`: installs the sidecars under `$REVKA_HOME/operator_mcp/`.
//!
//! The operator: its package is materialised to `operator_mcp/src/`, a venv is created at
//! `operator_mcp/venv/` with the chosen Python (≥ 3.11), the package is `pip install`ed into
//! it (pip's `PIP_*` environment is honoured, so an offline index or wheelhouse works), and
//! the launcher `operator_mcp/run_operator_mcp.py` is written. With `--with-session-manager`
//! the Node session manager is copied to `operator_mcp/session-manager/` (Node ≥ 18, its
//! `package.json` and `package-lock.json` included) and `npm ci --omit=dev` installs its
//! dependencies there (the Claude Agent SDK its claude backend uses); then
//! `[session_manager] enabled = true` is set in `config.toml` (comments kept, a running
//! daemon reloaded) with `--enable`, offered as a question on a terminal, or printed as the
//! command to run otherwise.
//!
//! Every step prints one line; `--dry-run` prints them as `would: …` and changes nothing.
//! Installing is idempotent: a file is rewritten only when its contents or mode differ, the
//! venv is kept while its interpreter works, and `pip install` runs only when the installed
//! package's version or contents differ from the ones being installed. Files are owner-only.
//! The package comes from the binary ([`Sources::embedded`]) or, with `--from-source DIR`,
//! from a checkout.

mod files;
mod npm;
mod sources;
mod venv;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use sources::{SourceFile, Sources};

use super::toolchain::{self, MIN_NODE, MIN_PYTHON, Version};
use files::{DirState, SyncOptions, dir_state, sync_files};

/// Exit code when `--sidecars-only` is missing (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// `revka install` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InstallArgs {
    /// Required: install the sidecars only (the full install is done by the release installer).
    #[arg(long)]
    pub sidecars_only: bool,
    /// Print the planned steps (`would: …`) without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The Python interpreter for the operator's venv (default `python3`; 3.11 or newer).
    #[arg(long, value_name = "PATH")]
    pub python: Option<String>,
    /// Also install the Node.js session manager (needs Node 18 or newer).
    #[arg(long)]
    pub with_session_manager: bool,
    /// With --with-session-manager: set `[session_manager] enabled = true` in config.toml
    /// without asking.
    #[arg(long, requires = "with_session_manager")]
    pub enable: bool,
    /// With --with-session-manager: the npm that installs its dependencies (default `npm`).
    #[arg(long, value_name = "PATH", env = "REVKA_NPM")]
    pub npm: Option<String>,
    /// Do not install the operator MCP sidecar.
    #[arg(long)]
    pub skip_operator: bool,
    /// Accepted for compatibility: Kumiho is not part of Revka and is never installed.
    #[arg(long)]
    pub skip_kumiho: bool,
    /// Install from a Revka checkout (its root directory) instead of the embedded files.
    #[arg(long, value_name = "DIR")]
    pub from_source: Option<PathBuf>,
}

/// The sidecars' paths under a `REVKA_HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `$REVKA_HOME`.
    pub home: PathBuf,
    /// `$REVKA_HOME/operator_mcp` (0700).
    pub dir: PathBuf,
    /// The materialised operator package, `operator_mcp/src`.
    pub src: PathBuf,
    /// The operator's venv, `operator_mcp/venv`.
    pub venv: PathBuf,
    /// The venv's interpreter, `operator_mcp/venv/bin/python`.
    pub venv_python: PathBuf,
    /// What was last `pip install`ed (`<version> <digest>`), `venv/.revka-operator-installed`.
    pub marker: PathBuf,
    /// The launcher, `operator_mcp/run_operator_mcp.py`.
    pub launcher: PathBuf,
    /// The session manager's files, `operator_mcp/session-manager`.
    pub session_manager: PathBuf,
}

impl Layout {
    /// The layout under `home`.
    pub fn new(home: &Path) -> Self {
        let dir = home.join("operator_mcp");
        let venv = dir.join("venv");
        Self {
            home: home.to_path_buf(),
            src: dir.join("src"),
            venv_python: venv.join("bin").join("python"),
            marker: venv.join(".revka-operator-installed"),
            launcher: dir.join("run_operator_mcp.py"),
            session_manager: dir.join("session-manager"),
            venv,
            dir,
        }
    }
}

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Steps that changed something (or would have, in a dry run).
    pub changes: usize,
}

/// Runs `revka install` for `home`, printing to stdout; the exit code. `config` is the
/// `--config` path (default `home/config.toml`), where `--enable` sets the session manager on.
pub fn run(args: &InstallArgs, home: &Path, config: Option<PathBuf>) -> ExitCode {
    if !args.sidecars_only {
        eprintln!(
            "revka install: only `revka install --sidecars-only` is supported here; the full \
             install (binary, service, config) is done by the release installer (install.sh)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let mut stdout = std::io::stdout().lock();
    match install(args, home, &mut stdout) {
        Ok(_) if args.with_session_manager && !args.dry_run => {
            drop(stdout);
            let path = config.unwrap_or_else(|| home.join(crate::config::CONFIG_FILE_NAME));
            enable_session_manager(&path, args.enable)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(reason) => {
            let _ = stdout.flush();
            eprintln!("revka install: failed: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the sidecars into `home` as `args` say, writing one line per step to `out`.
pub fn install(args: &InstallArgs, home: &Path, out: &mut dyn Write) -> Result<Report, String> {
    let sources = match &args.from_source {
        Some(dir) => Sources::from_checkout(dir)?,
        None => Sources::embedded(),
    };
    let layout = Layout::new(home);
    let mut run = Installer {
        out,
        dry_run: args.dry_run,
        changes: 0,
        prepared: false,
    };
    let mode = if args.dry_run { " (dry run)" } else { "" };
    run.line(&format!(
        "revka install: sidecars into {}{mode}; files {}",
        layout.dir.display(),
        sources.origin
    ));
    if args.skip_operator {
        run.line("skip operator (--skip-operator)");
    } else {
        let python = args.python.as_deref().unwrap_or("python3");
        run.operator(&layout, &sources, python, args.python.is_some())?;
    }
    if args.with_session_manager {
        run.session_manager(&layout, &sources, args.npm.as_deref().unwrap_or("npm"))?;
    }
    run.line(if args.skip_kumiho {
        "skip kumiho (--skip-kumiho): Kumiho is not part of Revka"
    } else {
        "skip kumiho: Kumiho is not part of Revka; nothing to install"
    });
    let changes = run.changes;
    run.line(&match (changes, args.dry_run) {
        (0, true) => "dry run: already installed; nothing would change".to_owned(),
        (n, true) => format!("dry run: {n} step(s) would change something; nothing was changed"),
        (0, false) => "already installed; nothing changed".to_owned(),
        (n, false) => format!("installed ({n} step(s) changed something)"),
    });
    Ok(Report { changes })
}

struct Installer<'a> {
    out: &'a mut dyn Write,
    dry_run: bool,
    /// Steps that changed something (or would).
    changes: usize,
    /// Whether [`Installer::prepare`] ran.
    prepared: bool,
}

impl Installer<'_> {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Something already as it should be.
    fn ok(&mut self, text: &str) {
        self.line(&format!("ok: {text}"));
    }

    /// A change: printed (`would:` in a dry run) and, unless dry, carried out.
    fn step(
        &mut self,
        text: &str,
        action: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        self.changes += 1;
        if self.dry_run {
            self.line(&format!("would: {text}"));
            Ok(())
        } else {
            self.line(text);
            action()
        }
    }

    /// `REVKA_HOME` (if missing) and `operator_mcp/` exist, owner-only, and an existing home is
    /// private (owned by this user, not group/world-writable); checked once per run.
    fn prepare(&mut self, layout: &Layout) -> Result<(), String> {
        if self.prepared {
            return Ok(());
        }
        self.prepared = true;
        if layout.home.is_dir() {
            // The daemon refuses a home others can write in; so does the installer, before it
            // puts programs the daemon will run there.
            revka_actors::fs::check_private_dir(&layout.home).map_err(|e| e.to_string())?;
        } else {
            self.ensure_dir(&layout.home, 0o700)?;
        }
        self.ensure_dir(&layout.dir, 0o700)
    }

    /// `path` exists as a directory; created (or its mode fixed) with `mode`.
    fn ensure_dir(&mut self, path: &Path, mode: u32) -> Result<(), String> {
        let shown = path.display();
        match dir_state(path, mode)? {
            DirState::Ok => {
                self.ok(&format!("{shown} exists"));
                Ok(())
            }
            DirState::Missing => self.step(&format!("create {shown} ({mode:04o})"), || {
                files::create_dir(path, mode)
            }),
            DirState::Mode(found) => self.step(
                &format!("chmod {mode:04o} {shown} (was {found:04o})"),
                || files::chmod(path, mode),
            ),
        }
    }

    /// Materialises `files` in `dir`; whether anything changed (or would).
    fn sync(
        &mut self,
        what: &str,
        dir: &Path,
        files: &[SourceFile],
        opts: SyncOptions<'_>,
    ) -> Result<bool, String> {
        let check = SyncOptions {
            check_only: true,
            ..opts
        };
        let plan = sync_files(dir, files, check)?;
        if plan.is_empty() {
            self.ok(&format!("{what} up to date in {}", dir.display()));
            return Ok(false);
        }
        let text = format!("write {what} to {} ({})", dir.display(), plan.describe());
        self.step(&text, || sync_files(dir, files, opts).map(drop))?;
        Ok(true)
    }

    fn operator(
        &mut self,
        layout: &Layout,
        sources: &Sources,
        python: &str,
        explicit: bool,
    ) -> Result<(), String> {
        let version = sources.operator_version()?;
        let found = toolchain::python_version(python)?;
        toolchain::require("Python", python, found, MIN_PYTHON)?;
        self.line(&format!("python: `{python}` is Python {found}"));
        self.prepare(layout)?;
        let src_changed = self.sync(
            "operator package",
            &layout.src,
            &sources.operator,
            owned(&[]),
        )?;
        let venv_new = self.venv(layout, python, found, explicit)?;
        let digest = format!("{version} {}", sources.operator_digest());
        let installed = if venv_new {
            Err("new venv".to_owned())
        } else {
            toolchain::installed_operator(&layout.venv_python)
        };
        let marker = std::fs::read_to_string(&layout.marker).unwrap_or_default();
        match installed {
            Ok(v) if v == version && marker.trim() == digest && !src_changed => {
                self.ok(&format!("revka-operator {v} already installed in the venv"));
            }
            _ => {
                let text = format!(
                    "pip install revka-operator {version} (with mcp>=2.3,<3) into {}",
                    layout.venv.display()
                );
                self.step(&text, || venv::pip_install(layout, &digest))?;
            }
        }
        let launcher = [SourceFile {
            path: "run_operator_mcp.py".to_owned(),
            contents: sources.launcher.clone(),
        }];
        let opts = SyncOptions {
            exec: &["run_operator_mcp.py"],
            prune: false,
            check_only: false,
        };
        self.sync("launcher", &layout.dir, &launcher, opts)?;
        Ok(())
    }

    /// Makes sure the venv exists with a usable interpreter; whether it is new.
    fn venv(
        &mut self,
        layout: &Layout,
        python: &str,
        found: Version,
        explicit: bool,
    ) -> Result<bool, String> {
        let shown = layout.venv.display();
        let problem = if layout.venv_python.exists() {
            match toolchain::python_version(&layout.venv_python.to_string_lossy()) {
                Ok(v) if v < MIN_PYTHON => Some(format!("it has Python {v}")),
                Ok(v) if explicit && v.minor() != found.minor() => {
                    Some(format!("it has Python {v}, --python is {found}"))
                }
                Ok(v) => {
                    self.ok(&format!("venv {shown} exists (Python {v})"));
                    return Ok(false);
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let text = match &problem {
            None => format!("create venv {shown} with `{python}` (Python {found})"),
            Some(why) => format!("recreate venv {shown} with `{python}` ({why})"),
        };
        self.step(&text, || venv::create(python, &layout.venv))?;
        Ok(true)
    }

    fn session_manager(
        &mut self,
        layout: &Layout,
        sources: &Sources,
        npm: &str,
    ) -> Result<(), String> {
        let found = toolchain::node_version("node")
            .map_err(|e| format!("the session manager needs Node.js 18 or newer: {e}"))?;
        toolchain::require("Node.js", "node", found, MIN_NODE)?;
        self.line(&format!("node: `node` is Node.js {found}"));
        self.prepare(layout)?;
        let opts = owned(&["session-manager.js"]);
        self.sync(
            "session manager",
            &layout.session_manager,
            &sources.session_manager,
            opts,
        )?;
        let digest = npm::manifest_digest(&sources.session_manager);
        let dir = &layout.session_manager;
        if npm::installed(dir, &digest) {
            self.ok(&format!(
                "session manager dependencies installed in {}",
                dir.join("node_modules").display()
            ));
        } else {
            let text = format!(
                "{npm} ci --omit=dev in {} (the Claude Agent SDK)",
                dir.display()
            );
            self.step(&text, || npm::ci(npm, dir, &digest))?;
        }
        if self.dry_run {
            self.line("would: set [session_manager] enabled = true in config.toml (if not set)");
        }
        Ok(())
    }
}

/// After installing the session manager: `[session_manager] enabled = true` in the config at
/// `path`, set when `enable`, offered on a terminal, or else printed as the command to run.
fn enable_session_manager(path: &Path, enable: bool) -> ExitCode {
    use std::io::IsTerminal;
    let loaded = crate::config::edit::load_lenient(path, &crate::config::process_env);
    if loaded.is_ok_and(|l| l.config.session_manager.enabled) {
        println!("ok: [session_manager] enabled = true in {}", path.display());
        return ExitCode::SUCCESS;
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let yes = enable
        || (interactive && {
            print!(
                "Run the session manager under the daemon ([session_manager] enabled = true in \
                 {})? [y/N] ",
                path.display()
            );
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
        });
    if !yes {
        println!(
            "session manager: to run it under the daemon, set [session_manager] enabled = true \
             in {} (`revka install --sidecars-only --with-session-manager --enable` does it)",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    let mut file = match crate::config::edit::ConfigFile::open(path) {
        Ok(f) => f,
        Err(e) => return super::mcp::refused(path, &e),
    };
    if let Err(e) = file.enable_session_manager() {
        return super::mcp::refused(path, &e);
    }
    let done = format!("set [session_manager] enabled = true in {}", path.display());
    super::mcp::save_and_reload(&file, &[], &done)
}

/// Options for a directory the installer owns: stale files are pruned.
fn owned<'a>(exec: &'a [&'a str]) -> SyncOptions<'a> {
    SyncOptions {
        exec,
        prune: true,
        check_only: false,
    }
}
