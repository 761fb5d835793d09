//! The timing page: every VM test's phases from the last run that ran it, beside the run before
//! that on the same machine, and the phases that grew. A `vm-test` run adds its tests to
//! target/vmtest/<distro>/timings.json (kept with the other results, so it is this machine's
//! history only) and writes docs/timings.md from every distro's history.
//!
//! Why a history per test and not per run: a filtered run (`vm-test debian install`) is how a
//! before/after pair is measured in one sitting, and it must not push the other tests' figures
//! off the page.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A phase grown by more than this fraction since the previous run is named after the run.
pub const GROWTH_NAMED: f64 = 0.20;
/// Phases shorter than this in the previous run are not named when they grow: a 0.3 s phase
/// that takes 0.4 s is noise, not news.
pub const GROWTH_FLOOR_SECONDS: f64 = 2.0;

/// A phase name's time: how many times it ran, their total (one test's run here; summed over
/// a run's tests in report.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub name: String,
    pub count: usize,
    pub seconds: f64,
}

impl PhaseTime {
    /// Adds one run of the phase `name` to `totals`: to its row, or as a new row at the end.
    pub fn add_to(totals: &mut Vec<PhaseTime>, name: &str, seconds: f64) {
        match totals.iter_mut().find(|x| x.name == name) {
            Some(x) => {
                x.count += 1;
                x.seconds += seconds;
            }
            None => totals.push(PhaseTime {
                name: name.to_string(),
                count: 1,
                seconds,
            }),
        }
    }
}

/// What one run of one test took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the run of VM tests started (UTC, `YYYY-MM-DD HH:MM`).
    pub when: String,
    /// `git describe --always --dirty` of the tree that ran it.
    pub commit: String,
    pub passed: bool,
    /// The whole test first, then in the order they first ran; a phase that ran several
    /// times is one row, summed.
    pub phases: Vec<PhaseTime>,
}

/// A test's last run and the one before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestHistory {
    pub last: Record,
    pub previous: Option<Record>,
}

/// What a whole run of VM tests took: the medium and the tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub when: String,
    pub commit: String,
    /// The tests it ran, by name, sorted.
    pub tests: Vec<String>,
    pub image_seconds: f64,
    pub image_cached: bool,
    pub wall_seconds: f64,
}

/// A distro's timing history on this machine (target/vmtest/<distro>/timings.json).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The machine the figures come from (cores, memory, CPU, the VMs' accelerator).
    pub machine: String,
    /// The last run of VM tests, and the one before it.
    pub runs: Vec<RunRecord>,
    pub tests: BTreeMap<String, TestHistory>,
}

/// A phase that grew by more than [`GROWTH_NAMED`] against the previous run.
#[derive(Debug, Clone, PartialEq)]
pub struct Grown {
    pub test: String,
    pub phase: String,
    pub before: f64,
    pub after: f64,
}

impl std::fmt::Display for Grown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {}: {:.1} s -> {:.1} s ({})",
            self.test,
            self.phase,
            self.before,
            self.after,
            change(self.before, self.after)
        )
    }
}

/// A test's phases, summed by name in the order they first ran, after its wall time as
/// `whole test` (the report's own `test` phase, that same span, is left out).
pub fn phase_times(phases: &[vmtests::report::Phase], wall_seconds: f64) -> Vec<PhaseTime> {
    let mut out = Vec::new();
    PhaseTime::add_to(&mut out, "whole test", wall_seconds);
    let mut ordered: Vec<&vmtests::report::Phase> = phases.iter().collect();
    ordered.sort_by(|a, b| a.start.total_cmp(&b.start));
    for p in ordered.into_iter().filter(|p| p.name != "test") {
        PhaseTime::add_to(&mut out, &p.name, p.seconds);
    }
    out
}

impl History {
    /// Adds a run's tests: each one's last record becomes its previous.
    pub fn add(&mut self, run: RunRecord, tests: Vec<(String, Record)>) {
        for (name, record) in tests {
            let previous = self.tests.remove(&name).map(|h| h.last);
            self.tests.insert(
                name,
                TestHistory {
                    last: record,
                    previous,
                },
            );
        }
        self.runs.push(run);
        let keep = self.runs.len().saturating_sub(2);
        self.runs.drain(..keep);
    }

    /// The phases of the tests `names` that grew by more than [`GROWTH_NAMED`] since their
    /// previous run (and took at least [`GROWTH_FLOOR_SECONDS`] then).
    pub fn grown(&self, names: &[String]) -> Vec<Grown> {
        let mut out = Vec::new();
        for name in names {
            let Some(TestHistory {
                last,
                previous: Some(previous),
            }) = self.tests.get(name)
            else {
                continue;
            };
            for p in &last.phases {
                let Some(before) = previous.phases.iter().find(|b| b.name == p.name) else {
                    continue;
                };
                if before.seconds >= GROWTH_FLOOR_SECONDS
                    && p.seconds > before.seconds * (1.0 + GROWTH_NAMED)
                {
                    out.push(Grown {
                        test: name.clone(),
                        phase: p.name.clone(),
                        before: before.seconds,
                        after: p.seconds,
                    });
                }
            }
        }
        out
    }

    /// This distro's section of the timing page.
    pub fn section(&self, distro: &str) -> String {
        let mut out = format!("## {distro}\n\nMachine: {}.\n\n", self.machine);
        out.push_str("| run of VM tests | tests | medium | wall |\n| --- | --- | --- | --- |\n");
        for (label, r) in ["previous", "last"]
            .iter()
            .rev()
            .zip(self.runs.iter().rev())
        {
            out.push_str(&format!(
                "| {label}: {} at {} | {}: {} | {:.1} s{} | {:.1} s |\n",
                r.when,
                r.commit,
                r.tests.len(),
                r.tests.join(", "),
                r.image_seconds,
                if r.image_cached { " (cached)" } else { "" },
                r.wall_seconds
            ));
        }
        out.push_str(
            "\n| test | phase | this run | previous run | change |\n| --- | --- | --- | --- | --- |\n",
        );
        for (name, h) in &self.tests {
            let when = |r: &Record| {
                format!(
                    "{} at {}{}",
                    r.when,
                    r.commit,
                    if r.passed { "" } else { ", failed" }
                )
            };
            out.push_str(&format!(
                "| **{name}** | | {} | {} | |\n",
                when(&h.last),
                h.previous.as_ref().map(when).unwrap_or_else(|| "-".into())
            ));
            for p in &h.last.phases {
                let before =
                    (h.previous.as_ref()).and_then(|r| r.phases.iter().find(|b| b.name == p.name));
                out.push_str(&format!(
                    "| | {} | {} | {} | {} |\n",
                    p.name.replace('|', "\\|"),
                    seconds(p),
                    before.map(seconds).unwrap_or_else(|| "-".into()),
                    before
                        .map(|b| change(b.seconds, p.seconds))
                        .unwrap_or_default()
                ));
            }
        }
        out
    }
}

/// `12.3 s`, or `12.3 s (3x)` for a phase that ran three times.
fn seconds(p: &PhaseTime) -> String {
    if p.count > 1 {
        format!("{:.1} s ({}x)", p.seconds, p.count)
    } else {
        format!("{:.1} s", p.seconds)
    }
}

/// `+24%`, `-40%`.
fn change(before: f64, after: f64) -> String {
    if before <= 0.0 {
        return String::new();
    }
    format!("{:+.0}%", (after / before - 1.0) * 100.0)
}

/// The page's opening: what it is and how to read it.
const PAGE_HEAD: &str = "# VM test timings

Generated by `cargo xtask vm-test` (xtask/src/timings.rs); do not edit. Each test's phases from
the last run that ran it, beside the run before that **on the same machine** (the history is
target/vmtest/<distro>/timings.json). Machines of one kind differ by about 1.5x in speed, so only
a before/after pair run in one sitting on one machine says what a change did. `vm-test` names at
its end every phase that grew by more than 20% (and took at least 2 s before).

";

/// Reads this machine's description: cores, memory, CPU model.
pub fn this_machine(accel: &str) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = (cpuinfo.lines())
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let gib = (meminfo.lines())
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {gib:.0} GiB, {model}; VMs under {accel}")
}

/// `git describe --always --dirty` of the workspace, or `unknown`.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(crate::project_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn history_path(out: &Path, distro: &str) -> PathBuf {
    out.join(distro).join("timings.json")
}

fn read_history(path: &Path) -> Result<History> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(History::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// One test of a run of VM tests, as its report has it.
pub struct Measured<'a> {
    pub name: &'a str,
    pub passed: bool,
    pub wall_seconds: f64,
    pub phases: &'a [vmtests::report::Phase],
    /// The VMs' accelerator (`tcg`, `kvm`).
    pub accel: &'a str,
}

/// A whole run of VM tests: when it began, how long its medium and the whole run took.
pub struct RunMeasured {
    pub when: String,
    pub image_seconds: f64,
    pub image_cached: bool,
    pub wall_seconds: f64,
}

/// Adds a run of `distro`'s VM tests to that distro's history under `out` (target/vmtest),
/// writes the page `page` from every distro's history there, and returns the phases that grew.
pub fn record(
    out: &Path,
    distro: &str,
    run: RunMeasured,
    tests: &[Measured],
    page: &Path,
) -> Result<Vec<Grown>> {
    let path = history_path(out, distro);
    let mut history = read_history(&path)?;
    let accel = (tests.iter())
        .map(|t| t.accel)
        .find(|a| !a.is_empty())
        .unwrap_or("an unknown accelerator");
    history.machine = this_machine(accel);
    let commit = commit();
    let mut names: Vec<String> = tests.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    let records = (tests.iter())
        .map(|t| {
            let record = Record {
                when: run.when.clone(),
                commit: commit.clone(),
                passed: t.passed,
                phases: phase_times(t.phases, t.wall_seconds),
            };
            (t.name.to_string(), record)
        })
        .collect();
    history.add(
        RunRecord {
            when: run.when,
            commit,
            tests: names.clone(),
            image_seconds: run.image_seconds,
            image_cached: run.image_cached,
            wall_seconds: run.wall_seconds,
        },
        records,
    );
    std::fs::create_dir_all(path.parent().expect("a distro directory"))?;
    std::fs::write(&path, serde_json::to_string_pretty(&history)?)?;
    write_page(out, page)?;
    Ok(history.grown(&names))
}

/// Writes the timing page from every distro's history under `out`.
fn write_page(out: &Path, page: &Path) -> Result<()> {
    let mut distros: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("timings.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    distros.sort();
    let mut text = PAGE_HEAD.to_string();
    for distro in distros {
        let history = read_history(&history_path(out, &distro))?;
        text.push_str(&history.section(&distro));
        text.push('\n');
    }
    if let Some(dir) = page.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(page, text).with_context(|| format!("writing {}", page.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmtests::report::Phase;

    fn phase(name: &str, start: f64, seconds: f64) -> Phase {
        Phase {
            name: name.into(),
            start,
            seconds,
        }
    }

    fn record_of(when: &str, phases: &[(&str, f64)]) -> Record {
        Record {
            when: when.into(),
            commit: "abc1234".into(),
            passed: true,
            phases: phases
                .iter()
                .map(|(n, s)| PhaseTime {
                    name: n.to_string(),
                    count: 1,
                    seconds: *s,
                })
                .collect(),
        }
    }

    fn run(when: &str, tests: &[&str]) -> RunRecord {
        RunRecord {
            when: when.into(),
            commit: "abc1234".into(),
            tests: tests.iter().map(|t| t.to_string()).collect(),
            image_seconds: 1.5,
            image_cached: true,
            wall_seconds: 300.0,
        }
    }

    #[test]
    fn phases_are_summed_by_name_in_the_order_they_first_ran() {
        // As a report holds them: recorded as they end, the whole test last.
        let phases = [
            phase("firmware to menu", 10.0, 20.0),
            phase("live boot", 0.0, 10.0),
            phase("firmware to menu", 60.0, 15.0),
            phase("test", 0.0, 100.0),
        ];
        let times = phase_times(&phases, 100.0);
        let names: Vec<(&str, usize, f64)> = (times.iter())
            .map(|p| (p.name.as_str(), p.count, p.seconds))
            .collect();
        assert_eq!(
            names,
            [
                ("whole test", 1, 100.0),
                ("live boot", 1, 10.0),
                ("firmware to menu", 2, 35.0)
            ]
        );
    }

    #[test]
    fn a_filtered_run_keeps_the_other_tests_and_moves_last_to_previous() {
        let mut h = History::default();
        h.add(
            run("1", &["install", "zbm-menu"]),
            vec![
                ("install".into(), record_of("1", &[("live boot", 50.0)])),
                (
                    "zbm-menu".into(),
                    record_of("1", &[("firmware to menu", 30.0)]),
                ),
            ],
        );
        h.add(
            run("2", &["install"]),
            vec![("install".into(), record_of("2", &[("live boot", 30.0)]))],
        );
        h.add(run("3", &["install"]), vec![]);
        assert_eq!(h.tests["install"].last.when, "2");
        assert_eq!(h.tests["install"].previous.as_ref().unwrap().when, "1");
        assert_eq!(h.tests["zbm-menu"].last.when, "1");
        assert!(h.tests["zbm-menu"].previous.is_none());
        let kept: Vec<&str> = h.runs.iter().map(|r| r.when.as_str()).collect();
        assert_eq!(kept, ["2", "3"], "the last run and the one before it");
    }

    #[test]
    fn growth_over_a_fifth_is_named_and_short_phases_are_not() {
        let mut h = History::default();
        let before = [("live boot", 50.0), ("install", 80.0), ("checks", 1.0)];
        // +20% exactly is not named; +21% is; a 1 s phase tripling is noise.
        let after = [("live boot", 60.0), ("install", 96.8), ("checks", 3.0)];
        h.add(
            run("1", &["install"]),
            vec![("install".into(), record_of("1", &before))],
        );
        h.add(
            run("2", &["install"]),
            vec![("install".into(), record_of("2", &after))],
        );
        let grown = h.grown(&["install".into()]);
        assert_eq!(
            grown,
            [Grown {
                test: "install".into(),
                phase: "install".into(),
                before: 80.0,
                after: 96.8
            }]
        );
        assert_eq!(
            grown[0].to_string(),
            "install / install: 80.0 s -> 96.8 s (+21%)"
        );
        // Only the tests asked about.
        assert!(h.grown(&["zbm-menu".into()]).is_empty());
    }

    #[test]
    fn the_page_has_each_phase_beside_its_previous_figure() {
        let mut h = History {
            machine: "2 cores".into(),
            ..Default::default()
        };
        h.add(
            run("2026-12-06 07:12", &["install"]),
            vec![(
                "install".into(),
                record_of("2026-12-06 07:12", &[("live boot", 50.0)]),
            )],
        );
        h.add(
            run("2026-12-06 09:00", &["install"]),
            vec![(
                "install".into(),
                record_of(
                    "2026-12-06 09:00",
                    &[("live boot", 30.0), ("install", 40.0)],
                ),
            )],
        );
        let page = h.section("debian-13");
        assert!(
            page.contains("| | live boot | 30.0 s | 50.0 s | -40% |"),
            "{page}"
        );
        assert!(page.contains("| | install | 40.0 s | - |  |"), "{page}");
        assert!(
            page.contains(
                "| **install** | | 2026-12-06 09:00 at abc1234 | 2026-12-06 07:12 at abc1234 | |"
            ),
            "{page}"
        );
        assert!(page.contains("| last: 2026-12-06 09:00"), "{page}");
        assert!(page.contains("| previous: 2026-12-06 07:12"), "{page}");
    }

    #[test]
    fn a_run_is_kept_on_disk_and_the_page_covers_every_distro() {
        let out = tempfile::tempdir().unwrap();
        let page = out.path().join("docs/timings.md");
        let phases = [phase("live boot", 0.0, 50.0)];
        let test = |seconds: f64| Measured {
            name: "install",
            passed: true,
            wall_seconds: seconds,
            phases: &phases,
            accel: "tcg",
        };
        let measured = |when: &str| RunMeasured {
            when: when.into(),
            image_seconds: 1.0,
            image_cached: true,
            wall_seconds: 100.0,
        };
        record(
            out.path(),
            "debian-13",
            measured("a"),
            &[test(100.0)],
            &page,
        )
        .unwrap();
        record(out.path(), "debian-12", measured("b"), &[test(90.0)], &page).unwrap();
        record(
            out.path(),
            "debian-13",
            measured("c"),
            &[test(130.0)],
            &page,
        )
        .unwrap();
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            text.contains("## debian-12") && text.contains("## debian-13"),
            "{text}"
        );
        assert!(
            text.contains("| | whole test | 130.0 s | 100.0 s | +30% |"),
            "{text}"
        );
        assert!(text.contains("VMs under tcg"), "{text}");
    }
}
