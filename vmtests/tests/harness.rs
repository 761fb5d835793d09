//! The harness itself, where it depends on the machine it runs on rather than on a medium.

use std::time::Duration;
use vmtests::machine::Machine;
use vmtests::ovmf::Firmware;
use vmtests::qemu::{Accel, Cpu, VmSpec};

/// A clone a few folders deep, a run directory named after a long scenario: QEMU still starts,
/// and its serial console and QMP answer (their sockets do not live in the run directory, whose
/// path is longer than a Unix socket's may be).
#[test]
#[ignore = "starts QEMU: run with `cargo xtask vm-test debian`"]
fn qemu_starts_from_a_deep_run_directory() {
    let top = tempfile::tempdir().unwrap();
    let run_dir = top
        .path()
        .join("home/someone-with-a-long-name/src/a-clone-with-a-long-name/kldload")
        .join("target/vmtest/debian-13")
        .join("20261126-042129-scenario-a-scenario-named-at-length");
    std::fs::create_dir_all(&run_dir).unwrap();
    assert!(run_dir.as_os_str().len() > 108, "{}", run_dir.display());
    let firmware = Firmware::resolve(&vmtests::env::project_root()).unwrap();
    let nvram = run_dir.join("nvram.fd");
    firmware.new_nvram(&nvram).unwrap();
    let spec = VmSpec {
        name: "installed".into(),
        // The firmware's first lines are all this needs: no probe, no accelerator to choose.
        accel: Accel::Tcg,
        cpu: Cpu::Default,
        firmware,
        nvram,
        memory_mib: 256,
        disks: vec![],
        fw_cfg: vec![],
        ssh_port: None,
        host_reachable: false,
        dir: run_dir.clone(),
        serial_on_stdio: false,
        incoming: None,
    };
    let transcript = run_dir.join("serial.log");
    let mut m = Machine::start(spec, &transcript, "firmware").unwrap();
    // Debian's OVMF names its boot manager on the serial port once it runs.
    m.console
        .wait_for("BdsDxe", Duration::from_secs(120))
        .unwrap();
    let shell = m.vm.sockets.shell();
    std::os::unix::net::UnixStream::connect(&shell)
        .unwrap_or_else(|e| panic!("the shell port's socket {}: {e}", shell.display()));
    let sockets = shell.parent().unwrap().to_owned();
    m.crash().unwrap();
    drop(m);
    assert!(!sockets.exists(), "{} outlived its VM", sockets.display());
}
