//! `kldload unattended`: what the live medium runs at boot. When an answer file is given (on the
//! kernel command line, through QEMU's fw_cfg, or on the medium), it installs without asking,
//! prints its progress on the consoles, ends with one clear line, and then powers off, reboots
//! or leaves a shell, as the answer file says (`after_install` after a success, `after_failure`,
//! by default the shell, after a failure).

use crate::app::{self, AppError, Overrides};
use crate::config::{AfterInstall, Config};
use crate::disk::LinuxSystem;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The line that ends a successful unattended install (the VM harness waits for it).
pub const SUCCESS_LINE: &str = "==== kldload: INSTALL SUCCEEDED ====";
/// The start of the line that ends a failed one.
pub const FAILURE_LINE: &str = "==== kldload: INSTALL FAILED";

/// `kldload.answers=PATH` on a kernel command line.
pub fn answers_from_cmdline(cmdline: &str) -> Option<PathBuf> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kldload.answers="))
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Where the answer file is, in order: kernel command line, fw_cfg, the medium. Waits a while
/// for the medium, which is mounted in parallel with this service.
fn find_answers() -> Option<PathBuf> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(p) = answers_from_cmdline(&cmdline) {
        return Some(p);
    }
    let _ = std::process::Command::new("modprobe")
        .arg("qemu_fw_cfg")
        .status();
    let start = Instant::now();
    loop {
        for candidate in [crate::medium::FW_CFG_ANSWERS, crate::medium::LIVE_ANSWERS] {
            if Path::new(candidate).is_file() {
                return Some(candidate.into());
            }
        }
        let medium_mounted = Path::new(crate::medium::LIVE_PAYLOAD).exists();
        if medium_mounted || start.elapsed() > Duration::from_secs(30) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the unattended install with the answer file `answers`, else with the one
/// [`find_answers`] finds, if any. Returns the exit status.
pub fn run(answers: Option<PathBuf>) -> i32 {
    let Some(path) = answers.or_else(find_answers) else {
        eprintln!(
            "kldload: no answer file (kldload.answers=, fw_cfg or {}): interactive use, see `kldload --help`",
            crate::medium::LIVE_ANSWERS
        );
        return 0;
    };
    eprintln!("kldload: unattended install with {}", path.display());
    // fw_cfg files report a size of 0 to stat; read them fully before parsing.
    let result = std::fs::read_to_string(&path)
        .map_err(|e| AppError::BadOption(format!("cannot read {}: {e}", path.display())))
        .and_then(|text| Ok(Config::parse(&text, &path.display().to_string())?))
        .map(|config| {
            let outcome = app::install(
                &config,
                &Overrides::default(),
                &LinuxSystem,
                app::Consent {
                    yes: true,
                    ..Default::default()
                },
            );
            (config, outcome)
        });
    let (after, status) = match result {
        Ok((config, Ok(()))) => {
            eprintln!("{SUCCESS_LINE}");
            (config.after_install, 0)
        }
        Ok((config, Err(e))) => {
            eprintln!("kldload: {e}");
            eprintln!(
                "{FAILURE_LINE}: {} ====",
                e.to_string().lines().next().unwrap_or_default()
            );
            (config.after_failure, e.exit_code())
        }
        Err(e) => {
            eprintln!("kldload: {e}");
            eprintln!("{FAILURE_LINE}: the answer file was not usable ====");
            (AfterInstall::Shell, e.exit_code())
        }
    };
    match after {
        AfterInstall::Poweroff => {
            let _ = std::process::Command::new("systemctl")
                .arg("poweroff")
                .status();
        }
        AfterInstall::Reboot => {
            let _ = std::process::Command::new("systemctl")
                .arg("reboot")
                .status();
        }
        AfterInstall::Shell => eprintln!("kldload: leaving a shell on the consoles"),
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_on_the_kernel_command_line() {
        assert_eq!(
            answers_from_cmdline("console=ttyS0 kldload.answers=/run/a.toml quiet"),
            Some(PathBuf::from("/run/a.toml"))
        );
        assert_eq!(answers_from_cmdline("console=ttyS0 kldload.answers="), None);
        assert_eq!(answers_from_cmdline("quiet"), None);
    }
}
