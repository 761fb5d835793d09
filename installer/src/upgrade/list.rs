//! `kldload upgrade --list`: the pool's boot environments, each with its kernel, ZFS, when it
//! was made and its state: the one running, the one the next boot counts down to (the pool's
//! bootfs), and what upgrades recorded (on trial, good, failed).

use super::plan::state;

/// One line of `zfs list -H -p -o name,creation,org.kldload:kernel,org.kldload:zfs,org.kldload:state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// Seconds since the epoch.
    pub creation: i64,
    pub kernel: Option<String>,
    pub zfs: Option<String>,
    pub state: Option<String>,
}

/// The datasets of `zfs list`'s output (`-` read as unset), the container itself left out.
pub fn parse(list: &str, container: &str) -> Vec<Listed> {
    let value = |v: Option<&str>| v.filter(|v| *v != "-" && !v.is_empty()).map(String::from);
    list.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_string();
            let creation = f.next()?.parse().ok()?;
            Some(Listed {
                name,
                creation,
                kernel: value(f.next()),
                zfs: value(f.next()),
                state: value(f.next()),
            })
        })
        .filter(|l| l.name != container)
        .collect()
}

/// The table, oldest first. `running_kernel` and `running_zfs` fill in the running boot
/// environment's columns when no upgrade recorded them (the one the install made).
pub fn table(
    listed: &[Listed],
    running: &str,
    bootfs: Option<&str>,
    running_kernel: &str,
    running_zfs: &str,
    date: impl Fn(i64) -> String,
) -> String {
    let mut rows: Vec<&Listed> = listed.iter().collect();
    rows.sort_by_key(|l| l.creation);
    let mut out = vec![[
        "BOOT ENVIRONMENT".to_string(),
        "KERNEL".into(),
        "ZFS".into(),
        "MADE".into(),
        "STATE".into(),
    ]];
    for l in rows {
        let is_running = l.name == running;
        let mut words = Vec::new();
        if is_running {
            words.push("running");
        }
        if Some(l.name.as_str()) == bootfs {
            words.push("next boot");
        }
        let recorded = l.state.as_deref().map(|s| match s {
            state::TRIAL => "on trial",
            other => other,
        });
        words.extend(recorded);
        let fill = |v: &Option<String>, running_value: &str| match v {
            Some(v) => v.clone(),
            None if is_running => running_value.to_string(),
            None => "-".into(),
        };
        out.push([
            l.name.clone(),
            fill(&l.kernel, running_kernel),
            fill(&l.zfs, running_zfs),
            date(l.creation),
            words.join(", "),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| out.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    out.iter()
        .map(|r| {
            let cells: Vec<String> = (0..5)
                .map(|i| format!("{:w$}", r[i], w = widths[i]))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_boot_environment_with_its_kernel_zfs_and_state() {
        let list = "rpool/ROOT\t1765150000\t-\t-\t-\n\
                    rpool/ROOT/7.2.12-20261208\t1765163000\t7.2.12+deb13-amd64\t2.4.4\ttrial\n\
                    rpool/ROOT/default\t1765150010\t-\t-\t-\n\
                    rpool/ROOT/old\t1765150020\t6.12.96+deb13-amd64\t2.3.9\tfailed\n";
        let listed = parse(list, "rpool/ROOT");
        assert_eq!(listed.len(), 3);
        let text = table(
            &listed,
            "rpool/ROOT/default",
            Some("rpool/ROOT/7.2.12-20261208"),
            "6.12.117+deb13-amd64",
            "2.3.9",
            |t| format!("t{t}"),
        );
        assert_eq!(
            text,
            "BOOT ENVIRONMENT            KERNEL                ZFS    MADE         STATE\n\
             rpool/ROOT/default          6.12.117+deb13-amd64  2.3.9  t1765150010  running\n\
             rpool/ROOT/old              6.12.96+deb13-amd64   2.3.9  t1765150020  failed\n\
             rpool/ROOT/7.2.12-20261208  7.2.12+deb13-amd64    2.4.4  t1765163000  next boot, on trial\n"
        );
    }
}
