//! kldload's VM harness: QEMU with OVMF (KVM when it works, TCG otherwise), the serial console
//! driven with rexpect and read as a screen, a root shell of the harness's own on a virtio-serial
//! port, QMP for faults, ZFSBootMenu's menu driven by keys, and the main job's flow and checks.
//! The scenarios are in `tests/`.

pub mod answers;
pub mod base;
pub mod checks;
pub mod console;
pub mod efivars;
pub mod env;
pub mod from_report;
pub mod guest;
pub mod live_state;
pub mod machine;
pub mod needs;
pub mod ovmf;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod report_fields;
pub mod round_trip;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod shell;
pub mod test_zbm;
pub mod wait;
pub mod zbm;
pub mod zfs_features;
