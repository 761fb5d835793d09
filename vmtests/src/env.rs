//! The one contract between `cargo xtask` and the VM tests: what xtask prepared (the medium, the
//! distro, the build's roots, ZFSBootMenu files), handed to the tests through environment
//! variables because nextest runs each test in a process of its own. xtask writes it with
//! [`VmTestEnv::to_vars`], the tests read it with [`VmTestEnv::from_env`]; no other code names
//! a `KLDLOAD_VMTEST_*` variable.

use crate::test_update::UpdateFrom;
use crate::test_zbm::{GivenZfsBootMenu, TestZfsBootMenu};
use anyhow::{Context, Result, bail};
use kldload::config::Distro;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable a user sets to name the ZFSBootMenu EFI file the given-file test installs
/// (read by xtask, which hands the tests its own resolution of it in the same variable).
pub const GIVEN_ZFSBOOTMENU: &str = "KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU";

const MEDIUM: &str = "KLDLOAD_VMTEST_MEDIUM";
const DISTRO: &str = "KLDLOAD_VMTEST_DISTRO";
const BUILDER_DIR: &str = "KLDLOAD_VMTEST_BUILDER_DIR";
const PAYLOAD_DIR: &str = "KLDLOAD_VMTEST_PAYLOAD_DIR";
const OUT: &str = "KLDLOAD_VMTEST_OUT";
const KEEP: &str = "KLDLOAD_VMTEST_KEEP";
const RUN: &str = "KLDLOAD_VMTEST_RUN";
const SCENARIOS: &str = "KLDLOAD_VMTEST_SCENARIOS";
const GENERATED_SCENARIOS: &str = "KLDLOAD_VMTEST_GENERATED_SCENARIOS";

/// A file a test installs, as xtask resolved it: the file, or why this run has none (the test
/// that needs it then fails saying so, rather than passing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provided {
    File(PathBuf),
    Unavailable(String),
}

impl Provided {
    const UNAVAILABLE: &'static str = "unavailable: ";

    /// The file, or an error saying why there is none.
    pub fn file(&self, what: &str) -> Result<PathBuf> {
        match self {
            Provided::File(path) if path.is_file() => Ok(path.clone()),
            Provided::File(path) => bail!("{what}: {} does not exist", path.display()),
            Provided::Unavailable(why) => bail!("{what}: {why}"),
        }
    }

    fn to_var(&self) -> OsString {
        match self {
            Provided::File(path) => path.clone().into(),
            Provided::Unavailable(why) => format!("{}{why}", Self::UNAVAILABLE).into(),
        }
    }

    fn from_var(value: Option<OsString>, variable: &str) -> Provided {
        match value {
            None => Provided::Unavailable(format!(
                "${variable} is not set: run through `cargo xtask vm-test`"
            )),
            Some(v) => match v.to_string_lossy().strip_prefix(Self::UNAVAILABLE) {
                Some(why) => Provided::Unavailable(why.to_string()),
                None => Provided::File(v.into()),
            },
        }
    }
}

/// Which scenario files the `scenarios` test binary lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenarios {
    /// Those marked `ci = true`.
    #[default]
    Ci,
    /// Every one (`cargo xtask vm-test --all-scenarios`, `vm-repro`).
    All,
}

/// What `cargo xtask vm-test` prepared for the VM tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmTestEnv {
    /// The live medium to boot.
    pub medium: Option<PathBuf>,
    /// The distro the medium installs.
    pub distro: Distro,
    /// The image build's builder and payload roots, for the tests of the image itself.
    pub builder_dir: Option<PathBuf>,
    pub payload_dir: Option<PathBuf>,
    /// Where run directories go (default target/vmtest).
    pub out: Option<PathBuf>,
    /// Keep each run's disks and NVRAM (for `cargo xtask vm-shell`).
    pub keep: bool,
    /// The id of this `vm-test` run: the shared base install tells its own failure from an
    /// earlier run's by it.
    pub run_id: Option<String>,
    pub scenarios: Scenarios,
    /// A directory of scenarios `vm-repro --from-report` made, listed with fixtures/scenarios.
    pub generated_scenarios: Option<PathBuf>,
    /// The ZFSBootMenu EFI file the given-file test installs.
    pub given_zfsbootmenu: Provided,
    /// The ZFSBootMenus built for tests, each resolved.
    pub test_zfsbootmenus: Vec<(TestZfsBootMenu, Provided)>,
    /// The update sticks made for tests (disk images), each resolved.
    pub update_sticks: Vec<(UpdateFrom, Provided)>,
}

impl Default for VmTestEnv {
    fn default() -> VmTestEnv {
        VmTestEnv::from_lookup(|_| None).expect("nothing to parse")
    }
}

impl VmTestEnv {
    /// The environment this process was started with.
    pub fn from_env() -> Result<VmTestEnv> {
        VmTestEnv::from_lookup(|name| std::env::var_os(name))
    }

    /// The environment `lookup` gives, by variable name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<VmTestEnv> {
        let path = |name: &str| lookup(name).map(PathBuf::from);
        let text = |name: &str| lookup(name).map(|v| v.to_string_lossy().into_owned());
        let distro = match text(DISTRO) {
            None => Distro::default(),
            Some(name) => name
                .parse()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("${DISTRO}"))?,
        };
        let scenarios = match text(SCENARIOS).as_deref() {
            None | Some("ci") => Scenarios::Ci,
            Some("all") => Scenarios::All,
            Some(other) => bail!("${SCENARIOS} is {other:?}: ci or all"),
        };
        Ok(VmTestEnv {
            medium: path(MEDIUM),
            distro,
            builder_dir: path(BUILDER_DIR),
            payload_dir: path(PAYLOAD_DIR),
            out: path(OUT),
            keep: text(KEEP).as_deref() == Some("1"),
            run_id: text(RUN),
            scenarios,
            generated_scenarios: path(GENERATED_SCENARIOS),
            given_zfsbootmenu: Provided::from_var(lookup(GIVEN_ZFSBOOTMENU), GIVEN_ZFSBOOTMENU),
            test_zfsbootmenus: TestZfsBootMenu::ALL
                .into_iter()
                .map(|t| (t, Provided::from_var(lookup(t.variable()), t.variable())))
                .collect(),
            update_sticks: UpdateFrom::ALL
                .into_iter()
                .map(|u| (u, Provided::from_var(lookup(u.variable()), u.variable())))
                .collect(),
        })
    }

    /// The variables that say this environment to a test process.
    pub fn to_vars(&self) -> Vec<(&'static str, OsString)> {
        let mut vars = vec![(DISTRO, OsString::from(self.distro.name()))];
        let paths = [
            (MEDIUM, &self.medium),
            (BUILDER_DIR, &self.builder_dir),
            (PAYLOAD_DIR, &self.payload_dir),
            (OUT, &self.out),
            (GENERATED_SCENARIOS, &self.generated_scenarios),
        ];
        for (name, value) in paths {
            if let Some(p) = value {
                vars.push((name, p.clone().into()));
            }
        }
        vars.push((KEEP, if self.keep { "1" } else { "0" }.into()));
        if let Some(id) = &self.run_id {
            vars.push((RUN, id.into()));
        }
        let scenarios = match self.scenarios {
            Scenarios::Ci => "ci",
            Scenarios::All => "all",
        };
        vars.push((SCENARIOS, scenarios.into()));
        vars.push((GIVEN_ZFSBOOTMENU, self.given_zfsbootmenu.to_var()));
        for (t, provided) in &self.test_zfsbootmenus {
            vars.push((t.variable(), provided.to_var()));
        }
        for (u, provided) in &self.update_sticks {
            vars.push((u.variable(), provided.to_var()));
        }
        vars
    }

    /// The medium, which must exist.
    pub fn medium(&self) -> Result<PathBuf> {
        let medium = self.medium.clone().with_context(|| {
            format!(
                "no medium: run the VM tests with `cargo xtask vm-test <distro>`, which builds \
                 it and sets ${MEDIUM}"
            )
        })?;
        if !medium.is_file() {
            bail!("${MEDIUM} names {}, which does not exist", medium.display());
        }
        Ok(medium)
    }

    /// Where run directories go.
    pub fn results_root(&self) -> PathBuf {
        (self.out.clone()).unwrap_or_else(|| project_root().join("target/vmtest"))
    }

    /// The test ZFSBootMenu `t`'s EFI file, or why this run has none.
    pub fn test_zfsbootmenu(&self, t: TestZfsBootMenu) -> Result<PathBuf> {
        let provided = (self.test_zfsbootmenus.iter())
            .find(|(x, _)| *x == t)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| Provided::Unavailable("not prepared".into()));
        provided.file(&format!("the ZFSBootMenu {}", t.name()))
    }

    /// The disk image of the update stick `from`, or why this run has none.
    pub fn update_stick(&self, from: UpdateFrom) -> Result<PathBuf> {
        let provided = (self.update_sticks.iter())
            .find(|(x, _)| *x == from)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| Provided::Unavailable("not prepared".into()));
        provided.file(&format!("the update stick ({})", from.name()))
    }

    /// The EFI file of the ZFSBootMenu `given`, or why this run has none.
    pub fn given_zfsbootmenu_file(&self, given: GivenZfsBootMenu) -> Result<PathBuf> {
        match given {
            GivenZfsBootMenu::UsersOwn => self.given_zfsbootmenu.file("the given ZFSBootMenu"),
            GivenZfsBootMenu::Test(t) => self.test_zfsbootmenu(t),
        }
    }
}

/// The project's root (the workspace), where fixtures/ is.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("in the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// What xtask writes, the tests read back as the same value.
    #[test]
    fn the_environment_reads_back_as_written() {
        let env = VmTestEnv {
            medium: Some("/cache/medium.img".into()),
            distro: Distro::Debian12,
            builder_dir: Some("/cache/builder".into()),
            payload_dir: None,
            out: Some("/deep/path with spaces/target/vmtest".into()),
            keep: true,
            run_id: Some("1764990000-42".into()),
            scenarios: Scenarios::All,
            generated_scenarios: Some("/x/from-report".into()),
            given_zfsbootmenu: Provided::Unavailable("no release: offline".into()),
            test_zfsbootmenus: vec![
                (
                    TestZfsBootMenu::OtherHostid,
                    Provided::File("/cache/zbm.EFI".into()),
                ),
                (
                    TestZfsBootMenu::Zfs21,
                    Provided::Unavailable("not taken".into()),
                ),
            ],
            update_sticks: vec![
                (UpdateFrom::Suite, Provided::Unavailable("not taken".into())),
                (
                    UpdateFrom::Backports,
                    Provided::File("/cache/update/stick.img".into()),
                ),
            ],
        };
        let vars: HashMap<&str, OsString> = env.to_vars().into_iter().collect();
        let read = VmTestEnv::from_lookup(|name| vars.get(name).cloned()).unwrap();
        assert_eq!(read, env);
        assert_eq!(vars[DISTRO], "debian-12");
    }

    #[test]
    fn a_bad_distro_or_scenario_set_is_named() {
        let e = VmTestEnv::from_lookup(|n| (n == DISTRO).then(|| "debian-99".into())).unwrap_err();
        assert!(
            format!("{e:#}").contains("no distro \"debian-99\""),
            "{e:#}"
        );
        let e = VmTestEnv::from_lookup(|n| (n == SCENARIOS).then(|| "some".into())).unwrap_err();
        assert!(format!("{e:#}").contains("ci or all"), "{e:#}");
        let unset = VmTestEnv::default();
        assert_eq!(unset.distro, Distro::Debian13);
        let e = unset.medium().unwrap_err();
        assert!(format!("{e:#}").contains("cargo xtask vm-test"), "{e:#}");
    }
}
