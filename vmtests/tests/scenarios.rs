//! Every scenario file in fixtures/scenarios/ as a test of its own, by its file name: a custom
//! libtest harness (libtest-mimic), so a new file is a new test without new code. They boot VMs,
//! so they are ignored unless asked for (`cargo xtask vm-test`, `vm-repro`, `ci`, which run
//! nextest with `--run-ignored`). The environment (`vmtests::env::Scenarios`) says which are
//! listed: those marked `ci = true` (the default) or all (`cargo xtask vm-test --all-scenarios`).

use libtest_mimic::{Arguments, Failed, Trial};
use vmtests::scenario::{Scenario, run_scenario, scenario_files};

fn main() {
    let mut args = Arguments::from_args();
    // One VM at a time under `cargo test` (nextest runs each test in its own process; there
    // `threads-required` in .config/nextest.toml does this): two cores, one shared base install.
    args.test_threads = Some(1);
    let env = vmtests::env::VmTestEnv::from_env().expect("the environment cargo xtask set");
    let all = env.scenarios == vmtests::env::Scenarios::All;
    let files = scenario_files(&vmtests::env::project_root()).expect("fixtures/scenarios");
    let trials = files
        .into_iter()
        .filter(|(_, path)| {
            // A file that does not load stays listed, and fails when run, saying why.
            all || Scenario::load(path).map_or(true, |s| s.ci)
        })
        .map(|(name, path)| {
            Trial::test(name.clone(), move || {
                run_scenario(&name, &path).map_err(|e| Failed::from(format!("{e:#}")))
            })
            .with_ignored_flag(true)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
