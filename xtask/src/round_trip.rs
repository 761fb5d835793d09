//! `cargo xtask vm-repro --round-trip [SCENARIO...]`: a scenario's machine, its `kldload report`,
//! and the VM `--from-report` rebuilds from that report, which must say the same of what it
//! reproduces (vmtests::round_trip). Several SCENARIOs (none: every scenario that has a round
//! trip) run one after another, with a table of their outcomes and times.

use crate::image;
use crate::vmtest::{
    run_one_scenario, scenario_name_from_report, scenario_path, vm_repro_from_report,
};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vmtests::scenario::Scenario;

/// Where the round trips' scenarios, reports and tables go.
fn round_trip_dir() -> PathBuf {
    crate::project_root().join("target/vmtest/round-trip")
}

/// How long each half of one round trip took (wall clock, the medium's check included); a
/// half that did not run has none.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Halves {
    pub scenario: Option<Duration>,
    pub rebuild: Option<Duration>,
    /// The bug's symptom, both halves' (none: the scenario marks no bug, and its report is
    /// taken before its last poweroff).
    pub symptom: Option<vmtests::scenario::Symptom>,
}

/// The round trip of `scenario`: the scenario run up to its bug with `kldload report` taken
/// there (before its last poweroff when it marks none;
/// target/vmtest/round-trip/round-trip-<scenario>.toml), then `--from-report` of the report it
/// took, which must end in the same symptom and whose last report step compares the rebuilt
/// VM's facts with it. Both runs'
/// results are kept as any run's; `halves` gets each half's time as it ends.
pub fn one(opts: &image::Options, scenario: &str, keep: bool, halves: &mut Halves) -> Result<()> {
    let loaded = Scenario::load(&scenario_path(scenario)?)?;
    let (with_report, symptom) = loaded
        .with_report_at_its_bug()
        .with_context(|| format!("scenario {scenario}: no round trip"))?;
    halves.symptom = symptom;
    let dir = round_trip_dir();
    std::fs::create_dir_all(&dir)?;
    let name = format!("round-trip-{scenario}");
    let file = dir.join(format!("{name}.toml"));
    with_report.write(&file)?;
    println!("round trip of {scenario}, 1/2: {}", file.display());
    let clock = Instant::now();
    let first = run_one_scenario(opts, name.clone(), keep, Some(dir.clone()));
    halves.scenario = Some(clock.elapsed());
    let first = first?;
    let run = first.scenario_dir(&name).map(Path::to_path_buf);
    first
        .passed_or_error()
        .with_context(|| results_named(&run))?;
    let run = run.context("the round trip's first run left no directory")?;
    let report = dir.join(format!("{}-{scenario}.json", opts.distro.name));
    std::fs::copy(run.join("kldload-report.json"), &report).with_context(|| {
        format!(
            "the round trip's first run ({}) kept no kldload-report.json",
            run.display()
        )
    })?;
    println!(
        "round trip of {scenario}, 2/2: --from-report {}",
        report.display()
    );
    let clock = Instant::now();
    let second = vm_repro_from_report(opts, &report, keep, symptom);
    halves.rebuild = Some(clock.elapsed());
    let rebuilt = scenario_name_from_report(&report);
    let second = second?;
    let run = second.scenario_dir(&rebuilt).map(Path::to_path_buf);
    second
        .passed_or_error()
        .with_context(|| results_named(&run))
}

/// What a failed half's error starts with: where its transcript and report are.
fn results_named(run: &Option<PathBuf>) -> String {
    match run {
        Some(dir) => format!("its results: {}", dir.display()),
        None => "it left no results directory".to_string(),
    }
}

/// One scenario's line in the table: its name, its halves' times, and the error that ended it
/// (none: it passed).
#[derive(Debug)]
pub struct Outcome {
    pub scenario: String,
    pub halves: Halves,
    pub error: Option<String>,
}

/// The round trips of `scenarios` in turn (none named: every scenario of fixtures/scenarios
/// that has a round trip); a failed one does not stop the others. After each, the table
/// so far (`table`) is written to target/vmtest/round-trip/<distro>.md; at the end it is
/// printed, and an error returned if any failed. A named scenario without a round trip is
/// refused before anything runs.
pub fn several(opts: &image::Options, scenarios: &[String], keep: bool) -> Result<()> {
    let (applicable, not_applicable) = applicable_scenarios()?;
    for name in scenarios.iter().filter(|n| !applicable.contains(n)) {
        if let Some((_, why)) = not_applicable.iter().find(|(n, _)| n == name) {
            bail!("scenario {name} has no round trip: {why}");
        }
        scenario_path(name)?; // not a scenario: the error lists those there are
    }
    let (chosen, not_applicable) = if scenarios.is_empty() {
        (applicable, not_applicable)
    } else {
        (scenarios.to_vec(), Vec::new())
    };
    let path = round_trip_dir().join(format!("{}.md", opts.distro.name));
    std::fs::create_dir_all(round_trip_dir())?;
    let mut outcomes = Vec::new();
    let mut text = String::new();
    for (i, scenario) in chosen.iter().enumerate() {
        let counter = format!("round trip {}/{}: {scenario}", i + 1, chosen.len());
        println!("==> {counter}");
        let mut halves = Halves::default();
        let error = (one(opts, scenario, keep, &mut halves).err()).map(|e| format!("{e:#}"));
        println!(
            "<== {counter}: {}",
            error.as_ref().map_or("passed", |_| "FAILED")
        );
        outcomes.push(Outcome {
            scenario: scenario.clone(),
            halves,
            error,
        });
        text = table(opts.distro.name, &outcomes, &not_applicable);
        std::fs::write(&path, &text)?;
    }
    println!("{text}\n(written to {})", path.display());
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} round trips failed on {}",
            outcomes.len(),
            opts.distro.name
        );
    }
    Ok(())
}

/// Scenarios without a round trip, each with the reason.
type NoRoundTrip = Vec<(String, String)>;

/// The scenarios that have a round trip, and those that do not with the reason.
fn applicable_scenarios() -> Result<(Vec<String>, NoRoundTrip)> {
    let mut applicable = Vec::new();
    let mut not_applicable = Vec::new();
    for (name, path) in vmtests::scenario::scenario_files(&crate::project_root())? {
        match Scenario::load(&path)?.with_report_at_its_bug() {
            Ok(_) => applicable.push(name),
            Err(e) => not_applicable.push((name, format!("{e:#}"))),
        }
    }
    Ok((applicable, not_applicable))
}

/// The round trips as a Markdown table: scenario, outcome (the error's first line when it
/// failed), each half's time; then the scenarios without a round trip and why.
pub fn table(distro: &str, outcomes: &[Outcome], not_applicable: &[(String, String)]) -> String {
    let seconds =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.0} s", d.as_secs_f64()));
    let passed = outcomes.iter().filter(|o| o.error.is_none()).count();
    let mut text = format!(
        "# Round trips on {distro}: {passed} of {} passed\n\n\
         | scenario | symptom | outcome | the scenario, with its report | the rebuild from that report |\n\
         |---|---|---|---|---|\n",
        outcomes.len()
    );
    for o in outcomes {
        let outcome = match &o.error {
            None => "passed".to_string(),
            Some(e) => {
                let half = if o.halves.rebuild.is_some() {
                    "the rebuild"
                } else {
                    "the scenario"
                };
                let first = e.lines().next().unwrap_or_default().replace('|', "\\|");
                format!("**failed** in {half}: {first}")
            }
        };
        let symptom =
            (o.halves.symptom).map_or("none marked: before its last poweroff", |s| s.name());
        text.push_str(&format!(
            "| {} | {symptom} | {outcome} | {} | {} |\n",
            o.scenario,
            seconds(o.halves.scenario),
            seconds(o.halves.rebuild)
        ));
    }
    if !not_applicable.is_empty() {
        text.push_str("\nNo round trip:\n");
        for (name, why) in not_applicable {
            text.push_str(&format!("- {name}: {why}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_says_which_half_failed_and_why() {
        let outcomes = [
            Outcome {
                scenario: "fresh-nvram".into(),
                halves: Halves {
                    scenario: Some(Duration::from_secs(172)),
                    rebuild: Some(Duration::from_secs(229)),
                    symptom: None,
                },
                error: None,
            },
            Outcome {
                scenario: "layouts-mirror".into(),
                halves: Halves {
                    scenario: Some(Duration::from_secs(430)),
                    rebuild: None,
                    symptom: None,
                },
                error: Some("VM tests failed for debian-13\nmore".into()),
            },
            Outcome {
                scenario: "hostid-mismatch".into(),
                halves: Halves {
                    scenario: Some(Duration::from_secs(205)),
                    rebuild: Some(Duration::from_secs(12)),
                    symptom: Some(vmtests::scenario::Symptom::InitramfsShell),
                },
                error: Some("facts | differ".into()),
            },
        ];
        let not = [("bad-input".to_string(), "ends with `crash`".to_string())];
        let text = table("debian-13", &outcomes, &not);
        assert!(
            text.starts_with("# Round trips on debian-13: 1 of 3 passed\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "| fresh-nvram | none marked: before its last poweroff | passed | 172 s | 229 s |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| layouts-mirror | none marked: before its last poweroff | **failed** in the scenario: VM tests failed for debian-13 \
                 | 430 s | - |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| hostid-mismatch | initramfs-shell | **failed** in the rebuild: facts \\| differ \
                 | 205 s | 12 s |"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\nNo round trip:\n- bad-input: ends with `crash`\n"),
            "{text}"
        );
    }

    #[test]
    fn every_scenario_ending_booted_has_a_round_trip_and_the_others_say_why() {
        let (applicable, not_applicable) = applicable_scenarios().unwrap();
        assert!(applicable.contains(&"fresh-nvram".to_string()));
        assert!(applicable.contains(&"layouts-raidz2".to_string()));
        let names: Vec<&str> = not_applicable.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bad-input", "install-fails-in-step-3"]);
        assert!(
            not_applicable
                .iter()
                .all(|(_, why)| why.contains("not the poweroff"))
        );
    }
}
