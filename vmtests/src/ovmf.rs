//! UEFI firmware for the VMs, found in order: `$OVMF_CODE`/`$OVMF_VARS`, Debian's `ovmf`
//! package, then the ovmf-prebuilt crate's download into the project's `ovmf/` directory (a
//! real path for hosts without the package; it needs GitHub, so it fails clearly where that is
//! not reachable). Each VM gets its own copy of the VARS file: its NVRAM, kept across its reboots.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Debian's ovmf package (4 MiB flash layout).
pub const DEBIAN_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const DEBIAN_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Its Secure Boot build (it needs SMM) and a variable store with Microsoft's keys enrolled and
/// Secure Boot on, as machines ship.
pub const DEBIAN_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const DEBIAN_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// The firmware code (read-only flash) and the template of its variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
    /// Where it came from, for the report.
    pub origin: String,
    /// The Secure Boot build: QEMU must give it SMM and secure flash.
    pub secure_boot: bool,
}

impl Firmware {
    pub fn resolve(project_root: &Path) -> Result<Firmware> {
        Self::resolve_from(
            std::env::var_os("OVMF_CODE").map(PathBuf::from),
            std::env::var_os("OVMF_VARS").map(PathBuf::from),
            Path::new(DEBIAN_CODE),
            Path::new(DEBIAN_VARS),
            &project_root.join("ovmf"),
        )
    }

    fn resolve_from(
        env_code: Option<PathBuf>,
        env_vars: Option<PathBuf>,
        debian_code: &Path,
        debian_vars: &Path,
        download_dir: &Path,
    ) -> Result<Firmware> {
        match (env_code, env_vars) {
            (Some(code), Some(vars)) => {
                for f in [&code, &vars] {
                    if !f.is_file() {
                        bail!(
                            "{} (from $OVMF_CODE/$OVMF_VARS) does not exist",
                            f.display()
                        );
                    }
                }
                return Ok(Firmware {
                    code,
                    vars_template: vars,
                    origin: "$OVMF_CODE/$OVMF_VARS".into(),
                    secure_boot: false,
                });
            }
            (Some(_), None) | (None, Some(_)) => {
                bail!("set both $OVMF_CODE and $OVMF_VARS, or neither")
            }
            (None, None) => {}
        }
        if debian_code.is_file() && debian_vars.is_file() {
            return Ok(Firmware {
                code: debian_code.to_owned(),
                vars_template: debian_vars.to_owned(),
                origin: "Debian's ovmf package".into(),
                secure_boot: false,
            });
        }
        let prebuilt = ovmf_prebuilt::Prebuilt::fetch(ovmf_prebuilt::Source::LATEST, download_dir).with_context(|| {
            format!(
                "no UEFI firmware: neither $OVMF_CODE/$OVMF_VARS, nor Debian's ovmf package ({DEBIAN_CODE}), \
                 and downloading ovmf-prebuilt into {} failed; install the ovmf package or set both variables",
                download_dir.display()
            )
        })?;
        Ok(Firmware {
            code: prebuilt.get_file(ovmf_prebuilt::Arch::X64, ovmf_prebuilt::FileType::Code),
            vars_template: prebuilt
                .get_file(ovmf_prebuilt::Arch::X64, ovmf_prebuilt::FileType::Vars),
            origin: format!("ovmf-prebuilt download in {}", download_dir.display()),
            secure_boot: false,
        })
    }

    /// Debian's Secure Boot firmware with Microsoft's keys, Secure Boot enforced.
    pub fn secure_boot() -> Result<Firmware> {
        for f in [DEBIAN_SECBOOT_CODE, DEBIAN_MS_VARS] {
            if !Path::new(f).is_file() {
                bail!("{f} is missing: the Secure Boot VM tests need Debian's ovmf package");
            }
        }
        Ok(Firmware {
            code: DEBIAN_SECBOOT_CODE.into(),
            vars_template: DEBIAN_MS_VARS.into(),
            origin: "Debian's ovmf package, Secure Boot build with Microsoft's keys".into(),
            secure_boot: true,
        })
    }

    /// Turns Secure Boot on or off in the NVRAM `vars` as a person does in the firmware's setup
    /// (edk2's `SecureBootEnable`), keeping every other variable: the keys, the boot entries,
    /// shim's MokList.
    pub fn set_secure_boot(vars: &Path, on: bool) -> Result<()> {
        let out = std::process::Command::new("virt-fw-vars")
            .arg("--inplace")
            .arg(vars)
            .args([
                if on { "--set-true" } else { "--set-false" },
                "SecureBootEnable",
            ])
            .output()
            .context("virt-fw-vars (package python3-virt-firmware)")?;
        if !out.status.success() {
            bail!(
                "virt-fw-vars could not turn Secure Boot {} in {}: {}",
                if on { "on" } else { "off" },
                vars.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Enrolls the certificate `der` as a MOK in the NVRAM `vars` (shim's MokList, which
    /// MokManager writes after `mokutil --import` on real hardware), with virt-fw-vars.
    pub fn enroll_mok(vars: &Path, der: &Path) -> Result<()> {
        let out = std::process::Command::new("virt-fw-vars")
            .arg("--inplace")
            .arg(vars)
            .args(["--add-mok", kldload::secure_boot::SHIM_LOCK_GUID])
            .arg(der)
            .output()
            .context("virt-fw-vars (package python3-virt-firmware)")?;
        if !out.status.success() {
            bail!(
                "virt-fw-vars could not enroll {} in {}: {}",
                der.display(),
                vars.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A fresh NVRAM for one VM.
    pub fn new_nvram(&self, dest: &Path) -> Result<()> {
        std::fs::copy(&self.vars_template, dest).with_context(|| {
            format!(
                "copying {} to {}",
                self.vars_template.display(),
                dest.display()
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_then_package() {
        let dir = tempfile::tempdir().unwrap();
        let f = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, "fd").unwrap();
            p
        };
        let (code, vars, dcode, dvars) = (f("c.fd"), f("v.fd"), f("dc.fd"), f("dv.fd"));
        let fw = Firmware::resolve_from(
            Some(code.clone()),
            Some(vars.clone()),
            &dcode,
            &dvars,
            dir.path(),
        )
        .unwrap();
        assert_eq!((fw.code, fw.vars_template), (code.clone(), vars));
        let fw = Firmware::resolve_from(None, None, &dcode, &dvars, dir.path()).unwrap();
        assert_eq!(fw.code, dcode);
        assert!(Firmware::resolve_from(Some(code), None, &dcode, &dvars, dir.path()).is_err());
        let missing = Firmware::resolve_from(
            Some(dir.path().join("nope")),
            Some(dir.path().join("nope2")),
            &dcode,
            &dvars,
            dir.path(),
        );
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
    }
}
