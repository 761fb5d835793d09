//! The main job: install onto a blank disk from the medium, boot it through ZFSBootMenu and
//! check what was built. Run by `cargo xtask vm-test <distro>`, which builds the medium and sets
//! $KLDLOAD_VMTEST_MEDIUM and $KLDLOAD_VMTEST_DISTRO.

use anyhow::ensure;
use serial_test::file_serial;
use std::time::Duration;
use vmtests::checks;
use vmtests::flow::{installed_base, test_on_blank_disk};

/// Also compares this install's SSH host keys with another install's from the same medium: the
/// shared base install the ZFSBootMenu tests and scenarios boot (made here if it is not there).
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
#[file_serial(installed_base)]
fn install_and_boot() {
    test_on_blank_disk("install", |run| {
        let config = kldload::config::Config::load(&run.answers)?;
        run.install_and_inspect()?;
        let mut m = run.boot_installed("installed")?;
        run.timed("checks", |run| {
            checks::run_all(&mut m, run, &config);
            Ok(())
        })?;
        m.shutdown(Duration::from_secs(120))?;
        let base = run.timed("the shared base install", |run| {
            installed_base(&run.distro, &run.medium)
        })?;
        let (here, there) = (
            run.host_keys_as_installed.clone(),
            base.host_keys_as_installed,
        );
        run.check("another install made other SSH host keys", || {
            ensure!(
                !there.is_empty(),
                "the base install in {} recorded no host keys",
                base.dir.display()
            );
            let shared: Vec<&String> = here.iter().filter(|k| there.contains(k)).collect();
            ensure!(
                shared.is_empty(),
                "the shared base install has the same host keys: {shared:?}"
            );
            Ok(format!(
                "{} keys here, {} in {}, none the same",
                here.len(),
                there.len(),
                base.dir.display()
            ))
        });
        Ok(())
    });
}
