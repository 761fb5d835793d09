//! Phases of long host work with their wall times: a spinner with the phase's latest log line on
//! a terminal, plain start/finish lines in CI (CI=true) or when output is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether progress may be drawn (a terminal, not CI): the installer's own test.
pub use kldload::exec::interactive;

/// Timed phases.
#[derive(Debug, Default)]
pub struct Phases {
    /// (phase, wall time, came from the cache).
    pub timings: Vec<(String, Duration, bool)>,
}

impl Phases {
    /// Runs one phase; `log` is followed for the spinner's message. `f` returns whether the
    /// result came from the cache.
    pub fn run<T>(
        &mut self,
        name: &str,
        log: Option<PathBuf>,
        f: impl FnOnce() -> anyhow::Result<(T, bool)>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let bar = if interactive() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                    .expect("valid"),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            if let Some(log) = log {
                let (bar, done) = (bar.clone(), Arc::clone(&done));
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let last = crate::run::tail_of(&log, 1);
                        bar.set_message(last.chars().take(120).collect::<String>());
                        std::thread::sleep(Duration::from_millis(500));
                    }
                });
            }
            Some(bar)
        } else {
            eprintln!("==> {name}");
            None
        };
        let result = f();
        done.store(true, Ordering::Relaxed);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let elapsed = start.elapsed();
        match result {
            Ok((value, cached)) => {
                eprintln!(
                    "<== {name}: {:.1}s{}",
                    elapsed.as_secs_f64(),
                    if cached { " (cached)" } else { "" }
                );
                self.timings.push((name.to_string(), elapsed, cached));
                Ok(value)
            }
            Err(e) => {
                eprintln!("!!! {name} failed after {:.1}s", elapsed.as_secs_f64());
                Err(e)
            }
        }
    }

    /// The timing table.
    pub fn table(&self) -> String {
        let mut out = String::from("phase               time\n");
        for (name, t, cached) in &self.timings {
            out.push_str(&format!(
                "{name:<18} {:>6.1}s{}\n",
                t.as_secs_f64(),
                if *cached { "  (cached)" } else { "" }
            ));
        }
        let total: f64 = self.timings.iter().map(|(_, t, _)| t.as_secs_f64()).sum();
        out.push_str(&format!("{:<18} {total:>6.1}s\n", "total"));
        out
    }
}
