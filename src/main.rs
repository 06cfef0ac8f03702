//! The `revka` binary: everything lives in the library (`revka::cli`).

fn main() -> std::process::ExitCode {
    revka::cli::main()
}
