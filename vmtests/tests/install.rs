//! The main job: install onto a blank disk from the medium, boot it through ZFSBootMenu and
//! check what was built. Run by `cargo xtask vm-test <distro>`, which builds the medium and sets
//! $KLDLOAD_VMTEST_MEDIUM and $KLDLOAD_VMTEST_DISTRO.

use std::time::Duration;
use vmtests::checks;
use vmtests::flow::test_on_blank_disk;

/// Its install is also the shared base the ZFSBootMenu tests and scenarios boot copies of,
/// when the medium has none yet: one install per run. (That two installs make different SSH
/// host keys is checked by the interrupted-install scenario, which installs anyway.)
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn install_and_boot() {
    test_on_blank_disk("install", |run| {
        let config = kldload::config::Config::load(&run.answers)?;
        let shared = run.install_and_share_as_base()?;
        let mut m = run.boot_installed("installed")?;
        run.timed("checks", |run| {
            checks::run_all(&mut m, run, &config);
            Ok(())
        })?;
        m.shutdown(Duration::from_secs(120))?;
        if shared {
            println!("this install is the shared base the other VM tests start from");
        }
        Ok(())
    });
}
