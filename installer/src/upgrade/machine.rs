//! `kldload upgrade` on the running system: reads the [`Facts`], checks the update with apt
//! (signature, hashes, what it depends on) and against the machine ([`plan::refusals`]) before
//! anything is written, then runs the plan. A failed run unmounts the new boot environment and
//! destroys it with its snapshot, so the pool is left as it was.

use super::apt::{IsolatedApt, UpdateSource, apt_errors};
use super::plan::{self, CLONE_ROOT, Facts};
use super::trial;
use super::update::{UPDATE_KEY_FILE, UPDATE_PACKAGE, UpdateInfo};
use crate::exec::{ProgressMode, Secrets};
use std::path::Path;
use std::process::Command;

/// Where the update's apt state lives while it is checked and installed.
pub const APT_DIR: &str = "/run/kldload/update";

/// An upgrade that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The update or the machine is not fit for it: nothing was changed.
    #[error("{0}\nnothing was changed")]
    Refused(String),
    /// The install into the new boot environment failed; it was removed again.
    #[error("the upgrade failed, and its new boot environment was removed: {0}")]
    Failed(String),
}

impl UpgradeError {
    /// 2 for a refusal (bad input), 1 for a failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            UpgradeError::Refused(_) => 2,
            UpgradeError::Failed(_) => 1,
        }
    }
}

/// What an upgrade did, for the person who ran it.
pub struct Upgraded {
    pub new: String,
    pub info: UpdateInfo,
    pub running: String,
    pub next_boot: plan::NextBoot,
}

/// Checks the update at `given` and, unless `dry_run`, installs it into a new boot environment
/// that boots next. With `dry_run` the plan is printed instead (after the same checks).
pub fn upgrade(given: &str, dry_run: bool) -> Result<Option<Upgraded>, UpgradeError> {
    let refused = UpgradeError::Refused;
    let source = UpdateSource::parse(given).map_err(refused)?;
    if !Path::new(UPDATE_KEY_FILE).is_file() {
        return Err(refused(format!(
            "this system has no update key ({UPDATE_KEY_FILE}): it was not installed by a \
             kldload that makes one. fix: install from a newer medium"
        )));
    }
    let mut facts = read_facts()?;
    let apt = IsolatedApt::new(APT_DIR);
    let info = check_update(&apt, &source)?;
    let mut problems = plan::refusals(&info, &facts);
    if plan::already_there(&info, &facts) {
        problems.push(format!(
            "this system already runs kernel {} with ZFS {}: nothing to upgrade",
            info.kernel, info.zfs
        ));
    }
    if !problems.is_empty() {
        return Err(refused(format!(
            "the update at {given} does not fit this machine:\n  {}",
            problems.join("\n  ")
        )));
    }
    download(&apt)?;
    remove_unfinished(&mut facts, dry_run);
    let new = plan::new_boot_environment(&info, &facts);
    let next_boot = next_boot();
    let plan = plan::plan(&info, &facts, &apt, &source, &new, next_boot);
    if dry_run {
        print!("{}", crate::plan::sh::render(&plan));
        return Ok(None);
    }
    let run = crate::exec::run_plan(&plan, ProgressMode::detect(), &Secrets::default());
    if let Err(e) = run {
        undo(&new, &facts);
        return Err(UpgradeError::Failed(e.to_string()));
    }
    Ok(Some(Upgraded {
        new,
        info,
        running: facts.running,
        next_boot,
    }))
}

/// On trial when the ZFSBootMenu on the ESP carries kldload's hook (the one built at image
/// time does); else the bootfs at once.
fn next_boot() -> plan::NextBoot {
    let zbm = crate::zbm::image::read(Path::new(crate::doctor::INSTALLED_ZFSBOOTMENU));
    match zbm {
        Ok(image) if image.boot_trial => plan::NextBoot::Trial,
        _ => plan::NextBoot::Bootfs,
    }
}

/// `kldload boot-trial`, after every boot: settles a trial ([`trial::settle`]). Returns what it
/// did, if anything.
pub fn boot_trial() -> Result<Option<String>, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let Some(running) = crate::doctor::running_boot_environment(&mounts) else {
        return Ok(None);
    };
    let pool = running.split('/').next().unwrap_or(&running).to_string();
    let local = |property: &str| {
        output(&[
            "zfs", "get", "-H", "-s", "local", "-o", "value", property, &running,
        ])
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "-")
    };
    let (variable, tried) = (
        trial_variable(trial::VARIABLE),
        trial_variable(trial::TRIED),
    );
    let settling = trial::Settling {
        pool,
        running: running.clone(),
        running_state: local(plan::STATE),
        running_commandline: local("org.zfsbootmenu:commandline"),
        trial: trial::Trial::read(
            std::fs::read(&variable).ok().as_deref(),
            std::fs::read(&tried).ok().as_deref(),
        ),
    };
    let settled = trial::settle(&settling);
    for argv in &settled.commands {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        output(&argv).ok_or_else(|| format!("`{}` failed", argv.join(" ")))?;
    }
    if settled.remove_variables {
        for path in [&tried, &variable] {
            crate::efivars::remove_variable(path)
                .map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
    }
    Ok(settled.said)
}

/// A trial's firmware variable `name` in efivarfs.
fn trial_variable(name: &str) -> std::path::PathBuf {
    Path::new(crate::efivars::EFIVARFS).join(format!("{name}-{}", trial::VENDOR_GUID))
}

/// `kldload upgrade --list`: the table of [`super::list`] for the running system's pool.
pub fn list() -> Result<String, UpgradeError> {
    let refused = UpgradeError::Refused;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let running = crate::doctor::running_boot_environment(&mounts)
        .ok_or_else(|| refused("/ is not a ZFS dataset: not a running kldload system".into()))?;
    let pool = running.split('/').next().unwrap_or(&running).to_string();
    let container = format!("{pool}/ROOT");
    let listing = output(&[
        "zfs",
        "list",
        "-H",
        "-p",
        "-o",
        "name,creation,org.kldload:kernel,org.kldload:zfs,org.kldload:state",
        "-d",
        "1",
        &container,
    ])
    .ok_or_else(|| refused(format!("`zfs list {container}` failed")))?;
    let bootfs = output(&["zpool", "get", "-H", "-o", "value", "bootfs", &pool])
        .and_then(|v| crate::doctor::boot_environments::parse_bootfs(&v));
    let kernel = output(&["uname", "-r"]).unwrap_or_default();
    let zfs = output(&["zfs", "version"])
        .and_then(|v| {
            v.lines()
                .next()
                .map(|l| l.trim_start_matches("zfs-").to_string())
        })
        .unwrap_or_default();
    Ok(super::list::table(
        &super::list::parse(&listing, &container),
        &running,
        bootfs.as_deref(),
        kernel.trim(),
        zfs.split('-').next().unwrap_or(&zfs),
        utc_minute,
    ))
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` UTC (the civil-from-days algorithm of
/// Howard Hinnant's date library).
pub fn utc_minute(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// apt reads the update (its InRelease checked against the machine's update key, its Packages
/// against InRelease) into [`APT_DIR`]; the update's description is read from its package.
fn check_update(apt: &IsolatedApt, source: &UpdateSource) -> Result<UpdateInfo, UpgradeError> {
    let refused = UpgradeError::Refused;
    let _ = std::fs::remove_dir_all(&apt.dir);
    for dir in apt.directories() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| refused(format!("cannot make {}: {e}", dir.display())))?;
    }
    std::fs::write(
        apt.sources_file(),
        IsolatedApt::sources_list(source, UPDATE_KEY_FILE),
    )
    .map_err(|e| {
        refused(format!(
            "cannot write {}: {e}",
            apt.sources_file().display()
        ))
    })?;
    let update = run(&apt.apt_get(&["update"]));
    // apt-get update exits 0 on some failures it only warns about (a source it cannot reach):
    // the update's package must be readable afterwards either way.
    let show = run(&apt.apt_cache(&["show", "--no-all-versions", UPDATE_PACKAGE]));
    match (update, show) {
        (Ok(_), Ok(stanza)) => UpdateInfo::from_stanza(&stanza).map_err(|e| {
            refused(format!(
                "{} is not an update kldload made: {e}",
                source.uri()
            ))
        }),
        (update, _) => {
            let output = match update {
                Ok(out) | Err(out) => out,
            };
            let errors = apt_errors(&output);
            Err(refused(format!(
                "apt could not read a signed update at {}: it must be reachable, signed with \
                 this machine's update key ({UPDATE_KEY_FILE}, from the build that made its \
                 image) and whole. apt said:\n  {}",
                source.uri(),
                if errors.is_empty() {
                    output.trim().to_string()
                } else {
                    errors.join("\n  ")
                }
            )))
        }
    }
}

/// apt downloads what the update's package needs on this system into [`APT_DIR`], checking each
/// file against the signed lists: a truncated or altered update stops here.
fn download(apt: &IsolatedApt) -> Result<(), UpgradeError> {
    run(&apt.apt_get(&[
        "install",
        "--download-only",
        "--yes",
        "--no-install-recommends",
        UPDATE_PACKAGE,
    ]))
    .map(|_| ())
    .map_err(|out| {
        UpgradeError::Refused(format!(
            "apt could not fetch the update's packages whole:\n  {}",
            apt_errors(&out).join("\n  ")
        ))
    })
}

/// Boot environments an earlier upgrade left unfinished (power cut, a failure its own
/// clean-up could not undo) are destroyed, never the running one; with `dry_run` only left out
/// of the names taken.
fn remove_unfinished(facts: &mut Facts, dry_run: bool) {
    for name in std::mem::take(&mut facts.unfinished) {
        if dry_run {
            eprintln!("{name} was left unfinished by an earlier upgrade: the upgrade removes it");
        } else {
            eprintln!("removing {name}, left unfinished by an earlier upgrade");
            let _ = Command::new("umount")
                .args(["--recursive", CLONE_ROOT])
                .status();
            let _ = Command::new("zfs").args(["destroy", &name]).status();
        }
        facts.boot_environments.retain(|be| *be != name);
    }
}

/// After a failed run: the new boot environment unmounted and destroyed, and its snapshot.
fn undo(new: &str, facts: &Facts) {
    let _ = Command::new("umount")
        .args(["--recursive", CLONE_ROOT])
        .status();
    let _ = Command::new("zfs").args(["destroy", new]).status();
    let snapshot = plan::origin_snapshot(facts);
    let _ = Command::new("zfs").args(["destroy", &snapshot]).status();
}

/// The machine as [`plan`] needs it.
fn read_facts() -> Result<Facts, UpgradeError> {
    let refused = UpgradeError::Refused;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let running = crate::doctor::running_boot_environment(&mounts).ok_or_else(|| {
        refused(
            "/ is not a ZFS dataset: `kldload upgrade` runs on an installed kldload system".into(),
        )
    })?;
    let (pool, _) = running
        .split_once('/')
        .ok_or_else(|| refused(format!("{running} is not a boot environment of a pool")))?;
    let pool = pool.to_string();
    let read =
        |argv: &[&str]| output(argv).ok_or_else(|| refused(format!("`{}` failed", argv.join(" "))));
    let listed = read(&[
        "zfs",
        "list",
        "-H",
        "-o",
        "name,org.kldload:state",
        "-d",
        "1",
        &format!("{pool}/ROOT"),
    ])?;
    let states: Vec<(String, String)> = (listed.lines().skip(1))
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, state)| (name.to_string(), state.to_string()))
        .collect();
    let boot_environments = states.iter().map(|(name, _)| name.clone()).collect();
    let in_state = |wanted: &'static str| (states.iter()).filter(move |(_, state)| state == wanted);
    let on_trial = in_state(plan::state::TRIAL)
        .map(|(name, _)| name.clone())
        .collect();
    let unfinished = in_state(plan::state::INSTALLING)
        .filter(|(name, _)| *name != running)
        .map(|(name, _)| name.clone())
        .collect();
    let local_properties = read(&[
        "zfs",
        "get",
        "-H",
        "-s",
        "local",
        "-o",
        "property,value",
        "all",
        &running,
    ])?
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(p, v)| (p.to_string(), v.to_string()))
    .collect();
    let pool_features = read(&["zpool", "get", "-H", "-o", "property,value", "all", &pool])?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(p, v)| p.starts_with("feature@") && (*v == "enabled" || *v == "active"))
        .map(|(p, _)| p.trim_start_matches("feature@").to_string())
        .collect();
    let module_signer = output(&["modinfo", "--field=signer", "zfs"])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let zfs = read(&["zfs", "version"])?
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("zfs-"))
        .map(|v| v.split('-').next().unwrap_or(v).to_string())
        .ok_or_else(|| refused("`zfs version` printed no zfs-X.Y.Z line".into()))?;
    let kernels = std::fs::read_dir("/lib/modules")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let commandline = output(&[
        "zfs",
        "get",
        "-H",
        "-o",
        "value",
        "org.zfsbootmenu:commandline",
        &running,
    ])
    .map(|v| v.trim().to_string())
    .filter(|v| !v.is_empty() && v != "-");
    let package_database = read(&["findmnt", "-n", "-o", "SOURCE", "--target", "/var/lib/dpkg"])?
        .trim()
        .to_string();
    let now = read(&["date", "--utc", "+%Y%m%d %H%M%S"])?;
    let (date, time) = now
        .trim()
        .split_once(' ')
        .ok_or_else(|| refused(format!("date printed {now:?}")))?;
    Ok(Facts {
        pool,
        running,
        boot_environments,
        on_trial,
        unfinished,
        local_properties,
        distro: running_distro()?,
        module_signer,
        kernels,
        zfs,
        pool_features,
        commandline,
        package_database,
        date: date.to_string(),
        time: time.to_string(),
    })
}

/// The running distro as kldload names it, from /etc/os-release (`debian` and `13`:
/// `debian-13`).
fn running_distro() -> Result<String, UpgradeError> {
    let text = std::fs::read_to_string("/etc/os-release")
        .map_err(|e| UpgradeError::Refused(format!("cannot read /etc/os-release: {e}")))?;
    distro_of_os_release(&text)
        .ok_or_else(|| UpgradeError::Refused("/etc/os-release names no ID and VERSION_ID".into()))
}

/// `debian-13` from an os-release file's ID and VERSION_ID (quoted or not); Debian testing,
/// which has no VERSION_ID, is named by kldload's name for it when its codename is known.
pub fn distro_of_os_release(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let id = field("ID")?;
    match field("VERSION_ID") {
        Some(version) => Some(format!("{id}-{}", version.split('.').next()?)),
        None if id == "debian" && field("VERSION_CODENAME").as_deref() == Some("forky") => {
            Some("debian-14".into())
        }
        None => None,
    }
}

/// Runs argv; Ok(stdout and stderr) when it succeeded, Err(them) when not.
fn run(argv: &[String]) -> Result<String, String> {
    tracing::debug!(?argv, "upgrade runs");
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// stdout of argv when it succeeded.
fn output(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc_as_date_reads_them() {
        // `date --utc --date=@N '+%F %H:%M'` for each.
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_796_698_800), "2026-12-08 03:00");
    }

    #[test]
    fn the_distro_is_named_from_os_release() {
        let trixie = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"13\"\nVERSION=\"13 (trixie)\"\nVERSION_CODENAME=trixie\nID=debian\n";
        assert_eq!(distro_of_os_release(trixie).as_deref(), Some("debian-13"));
        let forky =
            "PRETTY_NAME=\"Debian GNU/Linux forky/sid\"\nVERSION_CODENAME=forky\nID=debian\n";
        assert_eq!(distro_of_os_release(forky).as_deref(), Some("debian-14"));
        assert_eq!(distro_of_os_release("NAME=x\n"), None);
    }
}
