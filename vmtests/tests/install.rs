//! The main job: install onto a blank disk from the medium, boot it through ZFSBootMenu and
//! check what was built. Run by `cargo xtask vm-test <distro>`, which builds the medium and sets
//! $KLDLOAD_VMTEST_MEDIUM and $KLDLOAD_VMTEST_DISTRO.

use vmtests::checks;
use vmtests::flow::{Run, medium_from_env};

#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn install_and_boot() {
    let distro = std::env::var("KLDLOAD_VMTEST_DISTRO").unwrap_or_else(|_| "debian-13".into());
    let medium = medium_from_env().unwrap();
    let mut run = Run::new(&distro, "install", medium).unwrap();
    let config = kldload::config::Config::load(&run.answers).unwrap();
    let result = (|| -> anyhow::Result<()> {
        run.install()?;
        let mut m = run.boot_installed("installed")?;
        let start = std::time::Instant::now();
        checks::run_all(&mut m, &mut run, &config);
        run.report.phase("checks", start.elapsed());
        m.shutdown(std::time::Duration::from_secs(120))?;
        Ok(())
    })();
    if let Err(e) = result {
        run.report.error = Some(format!("{e:#}"));
    }
    run.finish().unwrap();
    assert!(run.report.passed(), "{}", run.report.failure_text());
}
