//! `cargo xtask <task>`: the project's tasks as a Rust program (the xtask pattern), so they run
//! the same on a laptop and in CI with nothing but cargo.
//!
//! - `ci`: the whole test suite, as CI runs it (README's test command).

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

#[derive(Parser)]
#[command(about = "kldload's tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test with nextest's `ci` profile (JUnit report in target/nextest/ci/junit.xml).
    Ci,
}

/// The workspace root (xtask lives one level below it).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn ci(sh: &Shell) -> anyhow::Result<()> {
    if cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .run()
        .is_err()
    {
        anyhow::bail!(
            "cargo-nextest is not installed: run `cargo install --locked cargo-nextest` (.ci/run does this)"
        );
    }
    cmd!(sh, "cargo nextest run --workspace --profile ci").run()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.task {
        Task::Ci => ci(&sh),
    }
}
