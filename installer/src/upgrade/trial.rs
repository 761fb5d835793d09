//! A boot environment on trial: booted once by itself, kept only if it boots to the end.
//!
//! Where the count lives: an EFI variable of kldload's own ([`VARIABLE`]), holding the boot
//! environment on trial and its tries left. ZFSBootMenu imports pools read-only and must count
//! a try *before* it boots the new kernel (a kernel that panics writes nothing afterwards);
//! a firmware variable is the one place it can write then, without importing the pool
//! read-write (which would drop an encrypted pool's loaded key and ask the passphrase again).
//! Everything that lasts is kept as ZFS properties of the boot environments
//! ([`super::plan::STATE`]), written by the booted system only.
//!
//! The pool's bootfs stays the previous, good boot environment during the trial. ZFSBootMenu,
//! as built at image time, carries two hooks ([`HOOKS`]):
//! - `boot-sel.d`: when the countdown boots the bootfs and the variable names another boot
//!   environment with tries left, it counts one down and boots that one instead. A try used up
//!   without the boot reaching its end leaves the variable at 0, and the next countdown boots
//!   the bootfs, the previous boot environment, with nobody at the console;
//! - `setup.d`: once the menu is drawn, a person chooses: the trial does not redirect them.
//!
//! On the booted system `kldload boot-trial` (kldload-boot-trial.service, after multi-user)
//! settles it ([`settle`]): the boot environment on trial that booted becomes good and the
//! bootfs; one whose tries ran out while another booted is marked failed.

use super::plan::{STATE, TRIAL_PANIC, state};

/// kldload's vendor GUID for its firmware variables.
pub const VENDOR_GUID: &str = "b57dc227-a3a2-4fda-9107-bca43f5c1b5d";
/// The variable's name (in efivarfs: `KldloadBootTrial-<VENDOR_GUID>`).
pub const VARIABLE: &str = "KldloadBootTrial";
/// Its attributes: non-volatile, boot-service and runtime access.
pub const ATTRIBUTES: u32 = 0x7;
/// Tries a boot environment gets.
pub const TRIES: u32 = 1;
/// The hook file names, in ZFSBootMenu's hook directories, and what the ZFSBootMenu image
/// check looks for.
pub const BOOT_SEL_HOOK: &str = crate::zbm::image::BOOT_TRIAL_HOOK;
pub const SETUP_HOOK: &str = "setup.d/kldload-menu-shown";
/// The file the setup hook leaves in ZFSBootMenu's working directory.
const MENU_SHOWN: &str = "/zfsbootmenu/kldload-menu-shown";

/// The trial the variable holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    pub boot_environment: String,
    pub tries_left: u32,
}

impl Trial {
    /// The variable's bytes as efivarfs takes them: the attributes, then `BE TRIES\n`.
    pub fn to_efivarfs(&self) -> Vec<u8> {
        let mut bytes = ATTRIBUTES.to_le_bytes().to_vec();
        bytes.extend(format!("{} {}\n", self.boot_environment, self.tries_left).bytes());
        bytes
    }

    /// Reads efivarfs's bytes (attributes first); None when they hold no trial.
    pub fn from_efivarfs(bytes: &[u8]) -> Option<Trial> {
        let text = std::str::from_utf8(bytes.get(4..)?).ok()?;
        let (be, tries) = text.trim().split_once(' ')?;
        Some(Trial {
            boot_environment: be.to_string(),
            tries_left: tries.trim().parse().ok()?,
        })
    }
}

/// The ZFSBootMenu hooks, (path under the hook root, script), which the image build installs
/// into the ZFSBootMenu it makes. Each reads only what ZFSBootMenu gives it; the boot-sel hook
/// writes only the variable.
pub fn hooks() -> [(&'static str, String); 2] {
    let var = format!("/sys/firmware/efi/efivars/{VARIABLE}-{VENDOR_GUID}");
    let boot_sel = format!(
        r#"#!/bin/bash
# kldload: boot a boot environment on trial once (kldload upgrade; installer/src/upgrade/trial.rs).
# Takes ZBM_SELECTED_BE and BOOTFS from ZFSBootMenu. When the countdown boots the pool's bootfs
# and {VARIABLE} names another boot environment with tries left, counts one down and boots that
# one instead; returns (the selected one boots) in every other case.
var="{var}"
[ -e "{MENU_SHOWN}" ] && exit 0
[ -r "${{var}}" ] || exit 0
read -r be tries < <(tail -c +5 "${{var}}")
[ -n "${{be}}" ] && [ "${{be}}" != "${{ZBM_SELECTED_BE}}" ] || exit 0
[ "${{tries}}" -gt 0 ] 2>/dev/null || exit 0
for src in /lib/profiling-lib.sh /etc/zfsbootmenu.conf /lib/zfsbootmenu-kcl.sh \
  /lib/zfsbootmenu-core.sh /lib/kmsg-log-lib.sh; do
  # shellcheck disable=SC1090
  source "${{src}}" >/dev/null 2>&1 || exit 0
done
mount_efivarfs rw
printf '\x07\x00\x00\x00%s %s\n' "${{be}}" "$((tries - 1))" > "${{var}}"
mount_efivarfs ro
zinfo "kldload: booting ${{be}} on trial"
echo "kldload: booting ${{be}} on trial ($((tries - 1)) tries left after this one)"
find_be_kernels "${{be}}" && kexec_kernel "$(select_kernel "${{be}}")"
zerror "kldload: ${{be}} could not be started; booting ${{ZBM_SELECTED_BE}}"
exit 0
"#
    );
    let setup = format!(
        r#"#!/bin/bash
# kldload: the menu is shown, so a person chooses what boots: no trial redirects them
# (installer/src/upgrade/trial.rs).
: > "{MENU_SHOWN}"
"#
    );
    [(BOOT_SEL_HOOK, boot_sel), (SETUP_HOOK, setup)]
}

/// What the booted system reads to settle a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settling {
    pub pool: String,
    /// The boot environment running (mounted at /).
    pub running: String,
    /// Its [`STATE`]; None when unset.
    pub running_state: Option<String>,
    /// Its `org.zfsbootmenu:commandline` as set on it (None: inherited or unset).
    pub running_commandline: Option<String>,
    /// The trial the variable holds, if any.
    pub trial: Option<Trial>,
}

/// What settling does: the commands (argv) and whether the variable goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settled {
    pub commands: Vec<Vec<String>>,
    pub remove_variable: bool,
    /// One line for the journal.
    pub said: Option<String>,
}

/// Decides what settling does:
/// - the running boot environment is on trial: it booted to the end, so it is good and the
///   pool's bootfs, and a variable naming it goes;
/// - the variable names another boot environment with no tries left: its trial boot did not
///   end (this one, the bootfs, booted instead), so it is failed, and the variable goes;
/// - else nothing (a trial still pending, or none).
pub fn settle(s: &Settling) -> Settled {
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut out = Settled::default();
    if s.running_state.as_deref() == Some(state::TRIAL) {
        out.commands.push(argv(&[
            "zfs",
            "set",
            &format!("{STATE}={}", state::GOOD),
            &s.running,
        ]));
        out.commands.push(argv(&[
            "zpool",
            "set",
            &format!("bootfs={}", s.running),
            &s.pool,
        ]));
        // The trial's restart on a panic is no longer wanted.
        if let Some(line) = &s.running_commandline {
            let kept = line.replace(TRIAL_PANIC, "");
            let kept = kept.split_whitespace().collect::<Vec<_>>().join(" ");
            if kept != *line {
                out.commands.push(if kept.is_empty() {
                    argv(&["zfs", "inherit", "org.zfsbootmenu:commandline", &s.running])
                } else {
                    argv(&[
                        "zfs",
                        "set",
                        &format!("org.zfsbootmenu:commandline={kept}"),
                        &s.running,
                    ])
                });
            }
        }
        out.remove_variable = s
            .trial
            .as_ref()
            .is_some_and(|t| t.boot_environment == s.running);
        out.said = Some(format!(
            "{} booted to the end: good, and the pool's bootfs",
            s.running
        ));
        return out;
    }
    if let Some(t) = &s.trial
        && t.boot_environment != s.running
        && t.tries_left == 0
    {
        out.commands.push(argv(&[
            "zfs",
            "set",
            &format!("{STATE}={}", state::FAILED),
            &t.boot_environment,
        ]));
        out.remove_variable = true;
        out.said = Some(format!(
            "{} was tried and did not boot to the end; {} booted instead and stays the bootfs",
            t.boot_environment, s.running
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "rpool/ROOT/7.2.12-20261208";
    const OLD: &str = "rpool/ROOT/default";

    fn settling(
        running: &str,
        running_state: Option<&str>,
        trial: Option<(&str, u32)>,
    ) -> Settling {
        Settling {
            pool: "rpool".into(),
            running: running.into(),
            running_state: running_state.map(String::from),
            running_commandline: None,
            trial: trial.map(|(be, tries_left)| Trial {
                boot_environment: be.into(),
                tries_left,
            }),
        }
    }

    #[test]
    fn the_variable_reads_back_as_written_and_as_the_hook_writes_it() {
        let t = Trial {
            boot_environment: NEW.into(),
            tries_left: 1,
        };
        assert_eq!(Trial::from_efivarfs(&t.to_efivarfs()), Some(t));
        // The hook's printf '\x07\x00\x00\x00%s %s\n' with 0 tries left.
        let hooks = b"\x07\x00\x00\x00rpool/ROOT/7.2.12-20261208 0\n";
        assert_eq!(
            Trial::from_efivarfs(hooks),
            Some(Trial {
                boot_environment: NEW.into(),
                tries_left: 0
            })
        );
        assert_eq!(Trial::from_efivarfs(b"\x07\x00\x00\x00"), None);
    }

    #[test]
    fn the_boot_environment_on_trial_that_booted_becomes_good_and_the_bootfs() {
        let s = settle(&settling(NEW, Some("trial"), Some((NEW, 0))));
        assert_eq!(
            s.commands,
            [
                vec!["zfs", "set", "org.kldload:state=good", NEW],
                vec!["zpool", "set", &format!("bootfs={NEW}"), "rpool"],
            ]
        );
        assert!(s.remove_variable);
        // The panic restart the trial added comes off the command line again.
        let mut with_line = settling(NEW, Some("trial"), Some((NEW, 0)));
        with_line.running_commandline = Some("console=ttyS0,115200 panic=10".into());
        assert_eq!(
            settle(&with_line).commands[2],
            [
                "zfs",
                "set",
                "org.zfsbootmenu:commandline=console=ttyS0,115200",
                NEW
            ]
        );
        with_line.running_commandline = Some("panic=10".into());
        assert_eq!(
            settle(&with_line).commands[2],
            ["zfs", "inherit", "org.zfsbootmenu:commandline", NEW]
        );
        // Chosen from the menu before the hook took its try: good all the same, and the
        // variable, which names it, goes.
        assert!(settle(&settling(NEW, Some("trial"), Some((NEW, 1)))).remove_variable);
    }

    #[test]
    fn a_trial_whose_tries_ran_out_while_the_old_one_booted_failed() {
        let s = settle(&settling(OLD, None, Some((NEW, 0))));
        assert_eq!(
            s.commands,
            [vec!["zfs", "set", "org.kldload:state=failed", NEW]]
        );
        assert!(s.remove_variable);
        // Tries left: still pending (a person chose the old one in the menu).
        assert_eq!(
            settle(&settling(OLD, None, Some((NEW, 1)))),
            Settled::default()
        );
        // No trial at all.
        assert_eq!(
            settle(&settling(OLD, Some("good"), None)),
            Settled::default()
        );
    }

    #[test]
    fn the_hooks_name_kldloads_variable_and_are_bash() {
        for (path, script) in hooks() {
            assert!(script.starts_with("#!/bin/bash\n"), "{path}");
        }
        let (_, boot_sel) = &hooks()[0];
        assert!(boot_sel.contains(&format!("efivars/{VARIABLE}-{VENDOR_GUID}")));
    }
}
