//! The install log on the live medium's ESP. The live system runs from memory, so a failed
//! install's console and journal are gone at the next power-off; a copy of the log on the stick
//! is what the user can read on another machine or attach to a bug report. The ESP is mounted
//! read-only (a stick pulled while mounted stays clean); for the install it is remounted
//! writable, and read-only again afterwards. A read-only stick, or no medium at all (kldload run
//! elsewhere), just has no such log: the console, the journal and, from step 3 on, the target's
//! /var/log/kldload/install.log still have it.

use crate::medium::{LIVE_INSTALL_LOG, LIVE_PAYLOAD, MOUNT};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The medium's ESP, writable for the install's log ([`LIVE_INSTALL_LOG`]).
pub struct MediumLog;

/// `mount -o remount,OPTION` of the medium; whether it worked.
fn remount(option: &str) -> bool {
    let argv = ["mount", "-o", &format!("remount,{option}"), MOUNT];
    let status = Command::new(argv[0]).args(&argv[1..]).status();
    tracing::debug!(?argv, ?status, "medium log");
    status.is_ok_and(|s| s.success())
}

impl MediumLog {
    /// The medium remounted writable and its log opened for appending, this install's first
    /// line written (the time and kldload's version): None, saying why on stderr, when no
    /// medium is mounted here or it cannot be written.
    pub fn open() -> Option<(MediumLog, File)> {
        if !Path::new(LIVE_PAYLOAD).is_file() {
            return None; // not on the live medium
        }
        if !remount("rw") {
            eprintln!(
                "kldload: the medium is read-only, so the install log is not kept on it (the \
                 console and the journal have it)"
            );
            return None;
        }
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .open(LIVE_INSTALL_LOG)
            .and_then(|mut file| {
                let now = Command::new("date").arg("-u").output();
                let now = now.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
                writeln!(
                    file,
                    "\n==== kldload install, {}, kldload {} ====",
                    now.unwrap_or_default(),
                    crate::version::line()
                )?;
                Ok(file)
            });
        match opened {
            Ok(file) => Some((MediumLog, file)),
            Err(e) => {
                eprintln!("kldload: cannot write the install log on the medium: {e}");
                remount("ro");
                None
            }
        }
    }

    /// Written out and the medium read-only again (`file`, the log, closed first), so the
    /// stick can be pulled.
    pub fn close(self, file: Option<File>) {
        if let Some(file) = file {
            let _ = file.sync_all();
        }
        if !remount("ro") {
            eprintln!("kldload: the medium stays writable: run `sync` before pulling it");
        }
    }
}

/// The lines that say where a failed install's log is: on the medium when it was written
/// there (as the stick names it), and on the target when the install got that far.
pub fn where_the_log_is(on_medium: bool, target_log: &Path) -> Vec<String> {
    let mut places = Vec::new();
    if on_medium {
        places.push(format!(
            "the install log is on the medium: {} on its KLDLOAD partition (here \
             {LIVE_INSTALL_LOG})",
            crate::medium::ESP_INSTALL_LOG
        ));
    }
    if target_log.is_file() {
        let too = if places.is_empty() { "" } else { " too" };
        places.push(format!(
            "the install log is on the target{too}: {} (its pool is still imported)",
            target_log.display()
        ));
    }
    if places.is_empty() {
        places.push(
            "the install log is on the console and in the journal (`journalctl -b`)".to_string(),
        );
    }
    places
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_every_place_its_log_is() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("install.log");
        let none = where_the_log_is(false, &target);
        assert_eq!(none.len(), 1);
        assert!(none[0].contains("journalctl"), "{none:?}");
        std::fs::write(&target, "x").unwrap();
        let both = where_the_log_is(true, &target);
        assert!(
            both[0].contains("kldload-install.log on its KLDLOAD partition"),
            "{both:?}"
        );
        assert!(both[1].contains("on the target too") && both[1].contains("install.log"));
        let target_only = where_the_log_is(false, &target);
        assert!(target_only[0].starts_with("the install log is on the target: "));
    }
}
