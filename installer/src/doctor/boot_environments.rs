//! What the pool's next unattended boot depends on beyond the running boot environment:
//! ZFSBootMenu counts down to the pool's `bootfs` and, with none, waits at its menu for a
//! person (zfsbootmenu's lib: the default boot environment is the pool's bootfs); and the
//! booted system's zfs-mount mounts every dataset with `canmount=on`, so a second boot
//! environment with `mountpoint=/` and `canmount=on` is mounted over the running root (two
//! datasets at /). kldload makes each boot environment `canmount=noauto`; ZFSBootMenu's own
//! duplicates are too.

/// What the doctor read: the root pool's bootfs and every dataset of the pool that mounts at /.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEnvironmentsReadings {
    pub pool: String,
    /// The pool's `bootfs`; None when unset (`-`).
    pub bootfs: Option<String>,
    /// The boot environment this system runs (mounted at /).
    pub running: String,
    /// `(dataset, canmount)` of each of the pool's datasets whose mountpoint is `/`.
    pub mounted_at_root: Vec<(String, String)>,
    /// `(boot environment, state)` of those `kldload upgrade` made (`org.kldload:state`).
    pub upgrades: Vec<(String, String)>,
}

/// `(name, state)` of `zfs list -H -o name,org.kldload:state` lines whose state is set.
pub fn parse_states(list: &str) -> Vec<(String, String)> {
    list.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, state)| *state != "-" && !state.is_empty())
        .map(|(name, state)| (name.to_string(), state.to_string()))
        .collect()
}

/// `zpool get -H -o value bootfs POOL`'s value: None for `-`.
pub fn parse_bootfs(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty() && v != "-").then(|| v.to_string())
}

/// `(dataset, canmount)` of the lines of `zfs list -H -o name,canmount,mountpoint` whose
/// mountpoint is `/`.
pub fn parse_mounted_at_root(list: &str) -> Vec<(String, String)> {
    list.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, canmount, mountpoint) = (f.next()?, f.next()?, f.next()?);
            (mountpoint == "/").then(|| (name.to_string(), canmount.to_string()))
        })
        .collect()
}

/// The reading lines and the problems: no bootfs, and another boot environment that mounts
/// itself at /.
pub fn judge(r: &BootEnvironmentsReadings) -> (Vec<String>, Vec<String>) {
    let pool = &r.pool;
    let mut lines = vec![format!(
        "pool {pool}'s bootfs (what ZFSBootMenu counts down to): {}",
        r.bootfs.as_deref().unwrap_or("(none)")
    )];
    let mut problems = Vec::new();
    if r.bootfs.is_none() {
        problems.push(format!(
            "pool {pool} has no bootfs: at every boot ZFSBootMenu waits at its menu for someone \
             to pick a boot environment instead of counting down to one. fix: zpool set \
             bootfs={} {pool}",
            r.running
        ));
    }
    for (dataset, canmount) in &r.mounted_at_root {
        lines.push(format!("{dataset}: mountpoint=/ canmount={canmount}"));
        if dataset != &r.running && canmount == "on" {
            problems.push(format!(
                "{dataset} has mountpoint=/ and canmount=on: at boot zfs-mount mounts it over \
                 the running {} (two datasets at /). fix: zfs set canmount=noauto {dataset}",
                r.running
            ));
        }
    }
    // The values `kldload upgrade` writes (crate::upgrade::plan::state; its tests hold the
    // two together: the doctor reads, it does not import the upgrade).
    for (be, state) in &r.upgrades {
        lines.push(match state.as_str() {
            "trial" => format!("{be}: on trial (kldload upgrade): the next boot tries it once"),
            "failed" => format!(
                "{be}: failed: its trial boot did not reach the end, and {} booted instead \
                 (kldload upgrade --list; remove it with `zfs destroy {be}` once you are done \
                 with it)",
                r.running
            ),
            "installing" => format!(
                "{be}: left unfinished by an upgrade (the next `kldload upgrade` removes it)"
            ),
            other => format!("{be}: {other} (kldload upgrade)"),
        });
    }
    (lines, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(bootfs: Option<&str>, at_root: &[(&str, &str)]) -> BootEnvironmentsReadings {
        BootEnvironmentsReadings {
            pool: "rpool".into(),
            bootfs: bootfs.map(String::from),
            running: "rpool/ROOT/default".into(),
            mounted_at_root: (at_root.iter())
                .map(|(d, c)| (d.to_string(), c.to_string()))
                .collect(),
            upgrades: vec![],
        }
    }

    #[test]
    fn boot_environments_an_upgrade_made_are_named_with_their_state() {
        let list = "rpool/ROOT\t-\nrpool/ROOT/7.2.12-20261208\tfailed\nrpool/ROOT/default\t-\n\
                    rpool/ROOT/7.2.13-20261209\ttrial\n";
        let mut r = readings(Some("rpool/ROOT/default"), &[]);
        r.upgrades = parse_states(list);
        assert_eq!(r.upgrades.len(), 2);
        let (lines, problems) = judge(&r);
        // Kept apart from problems: the machine boots what it booted before.
        assert!(problems.is_empty(), "{problems:?}");
        assert!(lines.iter().any(|l| l.starts_with(
            "rpool/ROOT/7.2.12-20261208: failed: its trial boot did not reach the end, and \
             rpool/ROOT/default booted instead"
        )));
        assert!(lines.contains(&"rpool/ROOT/7.2.13-20261209: on trial (kldload upgrade): the next boot tries it once".to_string()));
    }

    #[test]
    fn reads_zpool_and_zfs_output() {
        assert_eq!(parse_bootfs("-\n"), None);
        assert_eq!(
            parse_bootfs("rpool/ROOT/default\n").as_deref(),
            Some("rpool/ROOT/default")
        );
        let list = "rpool\toff\t/\nrpool/ROOT\toff\tnone\nrpool/ROOT/default\tnoauto\t/\n\
                    rpool/home\ton\t/home\n";
        assert_eq!(
            parse_mounted_at_root(list),
            [
                ("rpool".to_string(), "off".to_string()),
                ("rpool/ROOT/default".to_string(), "noauto".to_string())
            ]
        );
    }

    #[test]
    fn kldloads_own_layout_is_healthy() {
        let r = readings(
            Some("rpool/ROOT/default"),
            &[("rpool", "off"), ("rpool/ROOT/default", "noauto")],
        );
        assert!(judge(&r).1.is_empty());
    }

    #[test]
    fn no_bootfs_and_a_second_root_are_named_with_their_fixes() {
        let (_, problems) = judge(&readings(None, &[("rpool/ROOT/default", "noauto")]));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("no bootfs")
                && problems[0].ends_with("fix: zpool set bootfs=rpool/ROOT/default rpool"),
            "{problems:?}"
        );
        let (_, problems) = judge(&readings(
            Some("rpool/ROOT/default"),
            &[
                ("rpool/ROOT/default", "on"),
                ("rpool/ROOT/copy", "on"),
                ("rpool/ROOT/old", "noauto"),
            ],
        ));
        // The running one mounted at / is where it belongs; the other with canmount=on is not.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("rpool/ROOT/copy has mountpoint=/ and canmount=on"));
        assert!(problems[0].ends_with("fix: zfs set canmount=noauto rpool/ROOT/copy"));
    }
}
