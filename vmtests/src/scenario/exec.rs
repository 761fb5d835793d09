//! Running a scenario: its VM run made from the file's start, disks and answers, then each step
//! in turn, timed, its named check recorded; the report, transcript and check table written
//! whatever happens.

use super::{Scenario, Start, answers_file_path};
use crate::machine::Machine;
use crate::run::Run;
use anyhow::{Context, Result, bail, ensure};
use kldload::config::size::ByteSize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Runs the scenario `name` from `path` on the medium of the run's environment; its report,
/// transcript and check table are written whatever happens, and it fails unless every check
/// passed.
pub fn run_scenario(name: &str, path: &Path) -> Result<()> {
    let scenario = Scenario::load(path)?;
    let env = crate::env::VmTestEnv::from_env()?;
    let medium = env.medium()?;
    let start = Instant::now();
    let run_name = format!("scenario-{name}");
    let mut run = match scenario.start {
        Start::Installed | Start::LoggedIn => {
            Run::on_installed_base(env.distro, &run_name, medium)?
        }
        Start::Blank => {
            let mut run = Run::new(env.distro, &run_name, medium)?;
            // A scenario's subject comes after the medium's boot: its installs may start from
            // the medium's saved live shell (the main job boots the medium for real).
            run.install_from_saved_live_shell = true;
            run
        }
    };
    if scenario.start != Start::Blank {
        run.report.origin = Some(start);
        run.report.phase("base install", start.elapsed());
    }
    if let Some(file) = &scenario.answers_file {
        run.install_with_answers(&answers_file_path(file))?;
    }
    if !scenario.answers.is_empty() {
        crate::answers::merge_answers(&run.answers, &scenario.answers)?;
    }
    if let Some(zfsbootmenu) = scenario.zfsbootmenu {
        run.install_zfsbootmenu_file(&env.given_zfsbootmenu_file(zfsbootmenu)?)?;
    }
    if scenario.medium_writable {
        run.make_medium_writable()?;
    }
    if scenario.answers_on_medium {
        run.answers_on_medium()?;
    }
    run.target_sector_size = scenario.target.sector_size;
    for disk in &scenario.extra_disks {
        let disk = disk.options();
        let bytes = ByteSize::parse(&disk.size)
            .map_err(anyhow::Error::msg)?
            .bytes();
        run.add_extra_disk(bytes, disk.read_only, disk.sector_size)?;
    }
    if let Some(from) = scenario.update {
        run.attach_update_stick(&env.update_stick(from)?);
    }
    std::fs::copy(path, run.dir.join("scenario.toml"))?;
    let mut exec = Exec {
        run: &mut run,
        m: None,
        records: HashMap::new(),
    };
    let result = exec.start(&scenario).and_then(|()| exec.steps(&scenario));
    if let Some(mut m) = exec.m.take() {
        // Whatever state it is in, the VM goes: the run is over.
        let _ = m.crash();
    }
    if let Err(e) = result {
        run.report.error = Some(format!("{e:#}"));
    }
    run.finish()?;
    if !run.report.passed() {
        bail!("{}\n{}", scenario.summary, run.report.failure_text());
    }
    Ok(())
}

/// A scenario being run: its VM run, the machine when one is up, what `record` kept. The step
/// kinds (`steps`) act through it.
pub struct Exec<'r> {
    pub run: &'r mut Run,
    pub m: Option<Machine>,
    pub records: HashMap<String, String>,
}

impl Exec<'_> {
    /// The machine the first step finds: none, or the base logged in.
    fn start(&mut self, scenario: &Scenario) -> Result<()> {
        if scenario.start == Start::LoggedIn {
            self.m = Some(self.run.resume_logged_in("installed")?);
        }
        Ok(())
    }

    fn steps(&mut self, scenario: &Scenario) -> Result<()> {
        for (n, step) in scenario.steps.iter().enumerate() {
            let what = format!("step {} ({})", n + 1, step.describe());
            if let Some(m) = self.m.as_ref() {
                m.console.mark(&format!("scenario: {what}"));
            }
            let start = Instant::now();
            let result = step.run(self);
            self.run.report.phase(&what, start.elapsed());
            match (step.check(), result) {
                (Some(check), result) => self.run.report.timed_check(check, start, result),
                (None, Err(e)) => return Err(e.context(what)),
                (None, Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// The running machine, or an error saying the scenario started none.
    pub fn machine(&mut self) -> Result<&mut Machine> {
        self.m
            .as_mut()
            .context("no machine is running: start one first (boot, start, live, install)")
    }

    /// Steps that start a machine need the last one off (shut down or crashed).
    pub fn ensure_off(&self) -> Result<()> {
        ensure!(
            self.m.is_none(),
            "a machine is still running: end it with shutdown or crash first"
        );
        Ok(())
    }
}
