//! A VM run's results: named checks and phase wall times, written as report.json and
//! junit.xml beside the serial transcript, and printed as a table.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was seen (or why it failed).
    pub detail: String,
    /// How long the check took, when it was timed: its own commands on the machine, which a
    /// phase's time ("checks") does not break down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A stretch of a run's wall time. Phases may nest (a scenario's step holds the install's
/// phases): `start` says where each lies, so a summary can count each second once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Seconds from the run's start to the phase's.
    #[serde(default)]
    pub start: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub distro: String,
    pub accel: String,
    pub accel_reason: String,
    pub firmware: String,
    pub phases: Vec<Phase>,
    pub checks: Vec<Check>,
    /// A failure that stopped the run before its checks, if any.
    pub error: Option<String>,
    /// The run's wall time, from its start to its report.
    pub wall_seconds: f64,
    /// When the run started: phases are placed from it.
    #[serde(skip)]
    pub origin: Option<Instant>,
}

impl Report {
    /// Records the phase `name` that took `took` and has just ended.
    pub fn phase(&mut self, name: &str, took: Duration) {
        let origin = *self.origin.get_or_insert_with(Instant::now);
        let start = origin.elapsed().saturating_sub(took).as_secs_f64();
        self.phases.push(Phase {
            name: name.into(),
            start,
            seconds: took.as_secs_f64(),
        });
    }

    pub fn check(&mut self, name: &str, result: Result<String>) {
        self.push_check(name, result, None);
    }

    /// Records the check `name` that began at `start` and has just ended, with its time.
    pub fn timed_check(&mut self, name: &str, start: Instant, result: Result<String>) {
        self.push_check(name, result, Some(start.elapsed().as_secs_f64()));
    }

    fn push_check(&mut self, name: &str, result: Result<String>, seconds: Option<f64>) {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail,
            seconds,
        });
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "checks ({}; {}: {}; firmware: {}):\n",
            self.distro, self.accel, self.accel_reason, self.firmware
        ));
        for c in &self.checks {
            let first = c.detail.lines().next().unwrap_or_default();
            let first: String = first.chars().take(90).collect();
            let took = c.seconds.map_or(String::new(), |s| format!("{s:>5.1}s "));
            out.push_str(&format!(
                "  {} {:<34} {took}{first}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name
            ));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!(
                "  ERROR {}\n",
                e.lines().next().unwrap_or_default()
            ));
        }
        out.push_str("phases (in time order; a phase inside another is indented):\n");
        let mut timeline: Vec<(&Phase, usize)> = self.phases.iter().zip(self.depths()).collect();
        timeline.sort_by(|(a, da), (b, db)| a.start.total_cmp(&b.start).then(da.cmp(db)));
        for (p, depth) in timeline {
            let name = format!("{}{}", "  ".repeat(depth), p.name);
            out.push_str(&format!("  {name:<36} {:>7.1}s\n", p.seconds));
        }
        out.push_str(&format!(
            "  {:<36} {:>7.1}s\n",
            "wall time", self.wall_seconds
        ));
        out
    }

    /// How many other phases each phase lies within.
    pub fn depths(&self) -> Vec<usize> {
        depths(&self.phases)
    }

    /// What a failed run says: the table (first lines), then each failed check and the error
    /// in full, since the table cuts them short.
    pub fn failure_text(&self) -> String {
        let mut out = self.table();
        for c in self.checks.iter().filter(|c| !c.passed) {
            out.push_str(&format!("\nFAILED {}:\n{}\n", c.name, c.detail));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("\nERROR:\n{e}\n"));
        }
        out
    }

    /// report.json and junit.xml in `dir`; the wall time is taken now.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        if let Some(origin) = self.origin {
            self.wall_seconds = origin.elapsed().as_secs_f64();
        }
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        let mut report = quick_junit::Report::new(format!("vmtest-{}", self.distro));
        let mut suite = quick_junit::TestSuite::new(format!("vm-test {}", self.distro));
        for c in &self.checks {
            let status = if c.passed {
                quick_junit::TestCaseStatus::success()
            } else {
                let mut s =
                    quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure);
                s.set_description(c.detail.clone());
                s
            };
            let mut case = quick_junit::TestCase::new(c.name.clone(), status);
            case.set_system_out(c.detail.clone());
            suite.add_test_case(case);
        }
        if let Some(e) = &self.error {
            let mut s =
                quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Error);
            s.set_description(e.clone());
            suite.add_test_case(quick_junit::TestCase::new("run", s));
        }
        report.add_test_suite(suite);
        std::fs::write(dir.join("junit.xml"), report.to_string()?)?;
        Ok(())
    }
}

/// Whether phase `outer` holds phase `inner`: its span lies within the other's. Of two with the
/// same span, the one recorded later holds the other (phases are recorded as they end, so a
/// wrapper ends, and is recorded, after what it wraps).
fn holds(phases: &[Phase], outer: usize, inner: usize) -> bool {
    // Times are seconds from one clock: a millisecond of slack for rounding.
    const SLACK: f64 = 0.001;
    let (o, i) = (&phases[outer], &phases[inner]);
    let within = o.start <= i.start + SLACK && i.start + i.seconds <= o.start + o.seconds + SLACK;
    let same = (o.start - i.start).abs() <= SLACK && (o.seconds - i.seconds).abs() <= SLACK;
    outer != inner && within && (!same || outer > inner)
}

/// For each phase, how many others hold it.
pub fn depths(phases: &[Phase]) -> Vec<usize> {
    (0..phases.len())
        .map(|i| (0..phases.len()).filter(|&o| holds(phases, o, i)).count())
        .collect()
}

/// The phases that hold no other: each second of a run is in at most one of them.
pub fn innermost(phases: &[Phase]) -> Vec<&Phase> {
    (0..phases.len())
        .filter(|&o| !(0..phases.len()).any(|i| holds(phases, o, i)))
        .map(|i| &phases[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, start: f64, seconds: f64) -> Phase {
        Phase {
            name: name.into(),
            start,
            seconds,
        }
    }

    #[test]
    fn nested_phases_are_told_apart() {
        // Recorded as they end: the inner ones first, the step holding them after.
        let phases = [
            phase("live boot", 1.0, 20.0),
            phase("install", 21.0, 30.0),
            phase("step 1 (install)", 0.5, 51.0),
            phase("step 2 (boot)", 51.5, 40.0),
            phase("scenario", 0.0, 92.0),
        ];
        assert_eq!(depths(&phases), [2, 2, 1, 1, 0]);
        let inner: Vec<&str> = innermost(&phases).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(inner, ["live boot", "install", "step 2 (boot)"]);
    }

    #[test]
    fn a_wrapper_with_the_same_span_holds_the_phase_recorded_before_it() {
        let phases = [phase("checks", 0.0, 10.0), phase("test", 0.0, 10.0)];
        assert_eq!(depths(&phases), [1, 0]);
        let inner: Vec<&str> = innermost(&phases).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(inner, ["checks"]);
    }
}
