//! A boot environment on trial: booted once by itself, kept only if it boots to the end.
//!
//! Where the count lives: two EFI variables of kldload's own. ZFSBootMenu imports pools
//! read-only and must count a try *before* it boots the new kernel (a kernel that panics
//! writes nothing afterwards); a firmware variable is the one place it can write then without
//! importing the pool read-write (which would drop an encrypted pool's loaded key and ask the
//! passphrase again). efivarfs makes every variable it does not know immutable, and ZFSBootMenu
//! has no `chattr`: it can create a variable but not change or delete one. So `kldload upgrade`
//! writes [`VARIABLE`] naming the boot environment on trial, and the hook, as it boots it,
//! creates [`TRIED`] naming it too: its one try is used. The booted system, which has
//! `chattr`, removes both when it settles the trial. Everything that lasts is kept as ZFS
//! properties of the boot environments ([`super::plan::STATE`]), written by the booted system
//! only.
//!
//! The pool's bootfs stays the previous, good boot environment during the trial. ZFSBootMenu,
//! as built at image time, carries two hooks ([`hooks`]):
//! - `boot-sel.d`: when the countdown boots the bootfs and [`VARIABLE`] names another boot
//!   environment not yet tried, it records the try and boots that one instead. A try that does
//!   not reach the end of the boot leaves [`TRIED`] behind, and the next countdown boots the
//!   bootfs, the previous boot environment, with nobody at the console;
//! - `setup.d`: once the menu is drawn, a person chooses: the trial does not redirect them.
//!
//! On the booted system `kldload boot-trial` (kldload-boot-trial.service, after multi-user)
//! settles it ([`settle`]): the boot environment on trial that booted becomes good and the
//! bootfs; one that was tried while another booted is marked failed.

use super::plan::{STATE, TRIAL_PANIC, state};

/// kldload's vendor GUID for its firmware variables.
pub const VENDOR_GUID: &str = "b57dc227-a3a2-4fda-9107-bca43f5c1b5d";
/// The variables' names (in efivarfs: `<name>-<VENDOR_GUID>`): the boot environment on
/// trial, and the same name again once ZFSBootMenu has booted it (its try used).
pub const VARIABLE: &str = "KldloadBootTrial";
pub const TRIED: &str = "KldloadBootTried";
/// Their attributes: non-volatile, boot-service and runtime access.
pub const ATTRIBUTES: u32 = 0x7;
/// Tries a boot environment gets: one ([`TRIED`] is made once, and cannot be changed).
pub const TRIES: u32 = 1;
/// The hook file names, in ZFSBootMenu's hook directories, and what the ZFSBootMenu image
/// check looks for.
pub const BOOT_SEL_HOOK: &str = crate::zbm::image::BOOT_TRIAL_HOOK;
pub const SETUP_HOOK: &str = "setup.d/kldload-menu-shown";
/// The file the setup hook leaves in ZFSBootMenu's working directory.
const MENU_SHOWN: &str = "/zfsbootmenu/kldload-menu-shown";

/// The trial the variables hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    pub boot_environment: String,
    /// ZFSBootMenu has booted it once ([`TRIED`] names it).
    pub tried: bool,
}

/// A variable's bytes as efivarfs takes them: the attributes, then `text`.
pub fn to_efivarfs(text: &str) -> Vec<u8> {
    let mut bytes = ATTRIBUTES.to_le_bytes().to_vec();
    bytes.extend(text.as_bytes());
    bytes
}

/// The text of a variable's efivarfs bytes (attributes first), trimmed; None when empty or
/// not text.
pub fn from_efivarfs(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes.get(4..)?).ok()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl Trial {
    /// The trial [`VARIABLE`]'s and [`TRIED`]'s bytes say, if any.
    pub fn read(trial: Option<&[u8]>, tried: Option<&[u8]>) -> Option<Trial> {
        let boot_environment = from_efivarfs(trial?)?;
        let tried = tried.and_then(from_efivarfs).as_deref() == Some(boot_environment.as_str());
        Some(Trial {
            boot_environment,
            tried,
        })
    }
}

/// The ZFSBootMenu hooks, (path under the hook root, script), which the image build installs
/// into the ZFSBootMenu it makes. Each reads only what ZFSBootMenu gives it; the boot-sel hook
/// writes only the variable.
pub fn hooks() -> [(&'static str, String); 2] {
    let var = |name: &str| format!("/sys/firmware/efi/efivars/{name}-{VENDOR_GUID}");
    let (trial, tried) = (var(VARIABLE), var(TRIED));
    let boot_sel = format!(
        r#"#!/bin/bash
# kldload: boot a boot environment on trial once (kldload upgrade; installer/src/upgrade/trial.rs).
# Takes ZBM_SELECTED_BE from ZFSBootMenu. (efivarfs files cannot seek: read through cat.) When the countdown boots the pool's bootfs and
# {VARIABLE} names another boot environment that {TRIED} does not name yet, makes {TRIED}
# name it (its one try) and boots it instead; returns (the selected one boots) in every other
# case, and when the try cannot be recorded.
trial="{trial}"
tried="{tried}"
[ -e "{MENU_SHOWN}" ] && exit 0
[ -r "${{trial}}" ] || exit 0
be="$(cat "${{trial}}" | tail -c +5)"
[ -n "${{be}}" ] && [ "${{be}}" != "${{ZBM_SELECTED_BE}}" ] || exit 0
[ -e "${{tried}}" ] && exit 0
for src in /lib/profiling-lib.sh /etc/zfsbootmenu.conf /lib/zfsbootmenu-kcl.sh \
  /lib/zfsbootmenu-core.sh /lib/kmsg-log-lib.sh; do
  # shellcheck disable=SC1090
  source "${{src}}" >/dev/null 2>&1 || exit 0
done
mount_efivarfs rw
printf '\x07\x00\x00\x00%s\n' "${{be}}" > "${{tried}}"
mount_efivarfs ro
if [ "$(cat "${{tried}}" 2>/dev/null | tail -c +5)" != "${{be}}" ]; then
  zerror "kldload: cannot record the try of ${{be}}; booting ${{ZBM_SELECTED_BE}}"
  exit 0
fi
zinfo "kldload: booting ${{be}} on trial"
echo "kldload: booting ${{be}} on trial (its one try)"
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
    /// The trial the variables hold, if any.
    pub trial: Option<Trial>,
}

/// What settling does: the commands (argv) and whether the variables go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settled {
    pub commands: Vec<Vec<String>>,
    /// Both variables are removed.
    pub remove_variables: bool,
    /// One line for the journal.
    pub said: Option<String>,
}

/// Decides what settling does:
/// - the running boot environment is on trial: it booted to the end, so it is good and the
///   pool's bootfs, and the variables, naming it, go;
/// - the variables name another boot environment, tried: its trial boot did not end (this
///   one, the bootfs, booted instead), so it is failed, and the variables go;
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
        out.remove_variables = s
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
        && t.tried
    {
        out.commands.push(argv(&[
            "zfs",
            "set",
            &format!("{STATE}={}", state::FAILED),
            &t.boot_environment,
        ]));
        out.remove_variables = true;
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

    /// `tried`: whether ZFSBootMenu has used the trial's try.
    fn settling(
        running: &str,
        running_state: Option<&str>,
        trial: Option<(&str, bool)>,
    ) -> Settling {
        Settling {
            pool: "rpool".into(),
            running: running.into(),
            running_state: running_state.map(String::from),
            running_commandline: None,
            trial: trial.map(|(be, tried)| Trial {
                boot_environment: be.into(),
                tried,
            }),
        }
    }

    #[test]
    fn the_variables_read_back_as_kldload_and_the_hook_write_them() {
        let trial = to_efivarfs(&format!("{NEW}\n"));
        assert_eq!(&trial[..4], b"\x07\x00\x00\x00");
        // The hook's printf '\x07\x00\x00\x00%s\n'.
        let tried = b"\x07\x00\x00\x00rpool/ROOT/7.2.12-20261208\n";
        assert_eq!(
            Trial::read(Some(&trial), Some(tried)),
            Some(Trial {
                boot_environment: NEW.into(),
                tried: true
            })
        );
        assert_eq!(
            Trial::read(Some(&trial), None),
            Some(Trial {
                boot_environment: NEW.into(),
                tried: false
            })
        );
        // A try recorded for another boot environment is not this one's.
        let other = to_efivarfs("rpool/ROOT/older\n");
        assert!(!Trial::read(Some(&trial), Some(&other)).unwrap().tried);
        assert_eq!(Trial::read(Some(b"\x07\x00\x00\x00"), None), None);
        assert_eq!(Trial::read(None, Some(tried)), None);
    }

    #[test]
    fn the_boot_environment_on_trial_that_booted_becomes_good_and_the_bootfs() {
        let s = settle(&settling(NEW, Some("trial"), Some((NEW, true))));
        assert_eq!(
            s.commands,
            [
                vec!["zfs", "set", "org.kldload:state=good", NEW],
                vec!["zpool", "set", &format!("bootfs={NEW}"), "rpool"],
            ]
        );
        assert!(s.remove_variables);
        // The panic restart the trial added comes off the command line again.
        let mut with_line = settling(NEW, Some("trial"), Some((NEW, true)));
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
        // variables, which name it, go.
        assert!(settle(&settling(NEW, Some("trial"), Some((NEW, false)))).remove_variables);
    }

    #[test]
    fn a_trial_tried_while_the_old_one_booted_failed() {
        let s = settle(&settling(OLD, None, Some((NEW, true))));
        assert_eq!(
            s.commands,
            [vec!["zfs", "set", "org.kldload:state=failed", NEW]]
        );
        assert!(s.remove_variables);
        // Not tried yet: still pending (a person chose the old one in the menu).
        assert_eq!(
            settle(&settling(OLD, None, Some((NEW, false)))),
            Settled::default()
        );
        // No trial at all.
        assert_eq!(
            settle(&settling(OLD, Some("good"), None)),
            Settled::default()
        );
    }

    #[test]
    fn the_hooks_name_kldloads_variables_and_are_bash() {
        for (path, script) in hooks() {
            assert!(script.starts_with("#!/bin/bash\n"), "{path}");
        }
        let (_, boot_sel) = &hooks()[0];
        for name in [VARIABLE, TRIED] {
            assert!(boot_sel.contains(&format!("efivars/{name}-{VENDOR_GUID}")));
        }
    }
}
