//! A VM run's results: named checks and phase wall times, written as report.json and
//! junit.xml beside the serial transcript, and printed as a table.

use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was seen (or why it failed).
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub distro: String,
    pub accel: String,
    pub accel_reason: String,
    pub firmware: String,
    pub phases: Vec<Phase>,
    pub checks: Vec<Check>,
    /// A failure that stopped the run before its checks, if any.
    pub error: Option<String>,
}

impl Report {
    pub fn phase(&mut self, name: &str, took: Duration) {
        self.phases.push(Phase {
            name: name.into(),
            seconds: took.as_secs_f64(),
        });
    }

    pub fn check(&mut self, name: &str, result: Result<String>) {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail,
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
            out.push_str(&format!(
                "  {} {:<34} {first}\n",
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
        out.push_str("phases:\n");
        for p in &self.phases {
            out.push_str(&format!("  {:<24} {:>7.1}s\n", p.name, p.seconds));
        }
        let total: f64 = self.phases.iter().map(|p| p.seconds).sum();
        out.push_str(&format!("  {:<24} {total:>7.1}s\n", "total"));
        out
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

    /// report.json and junit.xml in `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
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
