//! Golden tests: the whole plan, as the script and as JSON, for every answer file in
//! fixtures/answers/, so any change to what the installer does shows up in review.
//! After an intended change: `cargo insta review` (or INSTA_UPDATE=always) and read the diff.

use kldload::app::{Overrides, make_plan};
use kldload::config::Config;
use kldload::disk::{BlockDevice, FakeSystem};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// A machine with a live medium and three identical data disks, for answer files with filters.
fn machine() -> FakeSystem {
    let disk = |name: &str, serial: &str, gib: u64, live| BlockDevice {
        name: name.into(),
        path: format!("/dev/{name}").into(),
        by_id: vec![format!("/dev/disk/by-id/ata-QEMU_HARDDISK_{serial}").into()],
        size: gib << 30,
        model: Some("QEMU HARDDISK".into()),
        serial: Some(serial.into()),
        live_medium: live,
        ..Default::default()
    };
    FakeSystem {
        disks: vec![
            disk("sda", "QM00001", 2, true),
            disk("sdb", "QM00002", 16, false),
            disk("sdc", "QM00003", 16, false),
            disk("sdd", "QM00004", 16, false),
        ],
        uefi: true,
        ..Default::default()
    }
}

#[test]
fn plans_for_every_answer_file() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("answers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let config = Config::load(&file).unwrap();
        let plan = make_plan(
            &config,
            &Overrides::default(),
            &machine(),
            &fixtures().join("host-root"),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(format!("{name}.sh"), kldload::plan::sh::render(&plan));
        insta::assert_snapshot!(format!("{name}.json"), plan.to_json());
    }
}
