//! `revka completions <shell>` and `revka man`: shell completion scripts and man pages,
//! generated at run time from the same clap definitions that parse the command line, so they
//! never drift from it and the build needs no extra step.
//!
//! Installing them (see the README's command-line section):
//!
//! ```text
//! revka completions bash > ~/.local/share/bash-completion/completions/revka
//! revka completions zsh  > ~/.zfunc/_revka          # with fpath+=(~/.zfunc) before compinit
//! revka completions fish > ~/.config/fish/completions/revka.fish
//! revka man --dir ~/.local/share/man/man1           # revka.1, revka-mcp.1, revka-mcp-add.1, ...
//! ```

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut out = Vec::new();
    write_completions(shell, &mut out);
    finish(std::io::stdout().lock().write_all(&out))
}

/// The completion script for `shell`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "revka", out);
}

/// Prints `revka.1` to stdout, or writes every page (one per visible command) into `dir`.
pub fn man(dir: Option<&Path>) -> ExitCode {
    match dir {
        Some(dir) => match write_man_pages(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "revka: cannot write the man pages to {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        },
        None => {
            let mut out = Vec::new();
            if let Err(e) = write_man_page(&mut out) {
                eprintln!("revka: cannot render the man page: {e}");
                return ExitCode::FAILURE;
            }
            finish(std::io::stdout().lock().write_all(&out))
        }
    }
}

/// The `revka(1)` page, in roff.
pub fn write_man_page(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// `revka.1` and one page per visible subcommand (`revka-mcp-add.1`, ...) in `dir`.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

/// Exit status of a write to stdout: a closed pipe (`| head`) is not a failure.
fn finish(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revka: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;
    use clap_complete::Shell;

    use super::{write_completions, write_man_page, write_man_pages};

    #[test]
    fn completions_generate_for_every_shell_and_know_the_commands() {
        for shell in Shell::value_variants() {
            let mut out = Vec::new();
            write_completions(*shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in [
                "revka",
                "daemon",
                "mcp",
                "add",
                "import",
                "completions",
                "config",
            ] {
                assert!(script.contains(word), "{shell}: no {word:?} in:\n{script}");
            }
        }
    }

    #[test]
    fn the_man_page_documents_the_commands_and_options() {
        let mut out = Vec::new();
        write_man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "roff: {page}");
        assert!(page.contains(".TH revka 1"), "{page}");
        for word in [
            "daemon",
            "mcp",
            "completions",
            "log\\-level",
            "REVKA_CONFIG",
        ] {
            assert!(page.contains(word), "no {word:?} in:\n{page}");
        }
        assert!(
            !page.contains("revka\\-man"),
            "the man command itself is hidden"
        );

        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path()).unwrap();
        for page in [
            "revka.1",
            "revka-mcp.1",
            "revka-mcp-add.1",
            "revka-completions.1",
        ] {
            assert!(dir.path().join(page).is_file(), "{page} missing");
        }
        assert!(!dir.path().join("revka-man.1").exists(), "hidden");
    }
}
