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
pub mod test_update;
pub mod test_zbm;
pub mod wait;
pub mod zbm;
pub mod zfs_features;

/// What unit tests share: the report `kldload report` wrote on kldload's debian install (the
/// VM test's, redacted), kept as fixtures/reports/kldload-debian-13.json.
#[cfg(test)]
pub(crate) mod recorded {
    /// Its text.
    pub fn report_text() -> String {
        let path = crate::env::project_root().join("fixtures/reports/kldload-debian-13.json");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// It, read.
    pub fn report() -> kldload::report::Report {
        serde_json::from_str(&report_text()).expect("the recorded report reads")
    }
}
