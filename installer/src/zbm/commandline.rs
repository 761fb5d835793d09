//! The kernel command line ZFSBootMenu boots a boot environment with, and whether it kept the
//! console. The bug this catches (zbm-dev/zfsbootmenu #94, #394 and others): kldload sets
//! `org.zfsbootmenu:commandline` on <pool>/ROOT, where every boot environment inherits it; a
//! value set on the boot environment itself, even an empty one (`zfs set
//! org.zfsbootmenu:commandline= <be>`), is local and hides the parent's, so the boot gets no
//! `console=`, and a machine whose only console is serial goes silent after ZFSBootMenu.
//!
//! ZFSBootMenu 3.1.0's `read_kcl_prop` (lib/zfsbootmenu-kcl.sh): the boot environment's value
//! (`-`: none, an empty line); `%{parent}` in it is replaced by its parent's line, read the
//! same way; an inherited value is the ancestor's, with that ancestor's parent for `%{parent}`.

/// One dataset's `org.zfsbootmenu:commandline` as `zfs get -H -o name,value,source` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub dataset: String,
    /// `-` when not set anywhere above.
    pub value: String,
    /// `local`, `inherited from <dataset>`, `-`, ...
    pub source: String,
}

/// Parses `zfs get -H -o name,value,source org.zfsbootmenu:commandline <datasets>`.
pub fn parse(text: &str) -> Vec<Property> {
    text.lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, '\t');
            Some(Property {
                dataset: fields.next()?.to_string(),
                value: fields.next()?.to_string(),
                source: fields.next()?.trim_end().to_string(),
            })
        })
        .collect()
}

/// The datasets from the pool down to `be`: `rpool`, `rpool/ROOT`, `rpool/ROOT/default`.
pub fn lineage(be: &str) -> Vec<String> {
    let parts: Vec<&str> = be.split('/').collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

fn parent(dataset: &str) -> Option<&str> {
    dataset.rsplit_once('/').map(|(p, _)| p)
}

/// The line ZFSBootMenu reads for `dataset`, with `%{parent}` expanded, from `props` (every
/// dataset of its lineage).
pub fn effective(dataset: &str, props: &[Property]) -> String {
    let Some(p) = props.iter().find(|p| p.dataset == dataset) else {
        return String::new();
    };
    if p.value == "-" {
        return String::new();
    }
    if !p.value.contains("%{parent}") {
        return p.value.clone();
    }
    // Inherited: the ancestor that sets it expands `%{parent}` with its own parent.
    let owner = p
        .source
        .strip_prefix("inherited from ")
        .unwrap_or(dataset)
        .to_string();
    let above = parent(&owner).map_or(String::new(), |par| effective(par, props));
    p.value.replace("%{parent}", &above)
}

fn consoles(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter(|w| w.starts_with("console="))
        .collect()
}

/// The reading line and the problem, if any: the boot environment's own (local) value leaves
/// out every `console=` an ancestor's value has.
pub fn judge(be: &str, props: &[Property]) -> (String, Option<String>) {
    let line = effective(be, props);
    let reading = format!("boot environment {be}: ZFSBootMenu's command line {line:?}");
    let Some(own) = props
        .iter()
        .find(|p| p.dataset == be && p.source == "local")
    else {
        return (reading, None);
    };
    let hidden = props
        .iter()
        .rev()
        .find(|p| p.dataset != be && p.source == "local" && !consoles(&p.value).is_empty());
    let Some(hidden) = hidden else {
        return (reading, None);
    };
    if !consoles(&line).is_empty() {
        return (reading, None);
    }
    let set = if own.value.trim().is_empty() {
        "is set to an empty value".to_string()
    } else {
        format!("is set to {:?}", own.value)
    };
    let problem = format!(
        "{be}'s own org.zfsbootmenu:commandline {set} (local), which hides {}'s {:?}: \
         ZFSBootMenu boots it without {}, and a machine whose console is serial shows nothing \
         after ZFSBootMenu. fix: zfs inherit org.zfsbootmenu:commandline {be} (or put \
         %{{parent}} in its value)",
        hidden.dataset,
        hidden.value,
        consoles(&hidden.value).join(" ")
    );
    (reading, Some(problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KLDLOAD: &str = "rpool\t-\t-\n\
        rpool/ROOT\tquiet console=tty0 console=ttyS0,115200\tlocal\n\
        rpool/ROOT/default\tquiet console=tty0 console=ttyS0,115200\tinherited from rpool/ROOT\n";

    #[test]
    fn kldload_s_inherited_line_is_sound() {
        let props = parse(KLDLOAD);
        assert_eq!(props.len(), 3);
        assert_eq!(
            lineage("rpool/ROOT/default"),
            ["rpool", "rpool/ROOT", "rpool/ROOT/default"]
        );
        let (reading, problem) = judge("rpool/ROOT/default", &props);
        assert_eq!(problem, None);
        assert!(reading.ends_with("\"quiet console=tty0 console=ttyS0,115200\""));
    }

    #[test]
    fn an_empty_local_value_hides_the_console() {
        let text = KLDLOAD.replace(
            "rpool/ROOT/default\tquiet console=tty0 console=ttyS0,115200\tinherited from rpool/ROOT",
            "rpool/ROOT/default\t\tlocal",
        );
        let props = parse(&text);
        assert_eq!(effective("rpool/ROOT/default", &props), "");
        let (_, problem) = judge("rpool/ROOT/default", &props);
        let problem = problem.expect("a problem");
        assert!(
            problem.starts_with(
                "rpool/ROOT/default's own org.zfsbootmenu:commandline is set to an empty value \
                 (local), which hides rpool/ROOT's \"quiet console=tty0 console=ttyS0,115200\": \
                 ZFSBootMenu boots it without console=tty0 console=ttyS0,115200"
            ),
            "{problem}"
        );
        assert!(
            problem.contains("fix: zfs inherit org.zfsbootmenu:commandline rpool/ROOT/default")
        );
    }

    #[test]
    fn a_local_value_that_keeps_the_parent_or_a_console_is_sound() {
        for own in ["%{parent} nomodeset", "console=ttyS0,115200 nomodeset"] {
            let text = KLDLOAD.replace(
                "quiet console=tty0 console=ttyS0,115200\tinherited from rpool/ROOT",
                &format!("{own}\tlocal"),
            );
            let props = parse(&text);
            let (reading, problem) = judge("rpool/ROOT/default", &props);
            assert_eq!(problem, None, "{own}: {reading}");
        }
        let text = KLDLOAD.replace(
            "quiet console=tty0 console=ttyS0,115200\tinherited from rpool/ROOT",
            "%{parent} nomodeset\tlocal",
        );
        assert_eq!(
            effective("rpool/ROOT/default", &parse(&text)),
            "quiet console=tty0 console=ttyS0,115200 nomodeset"
        );
    }

    #[test]
    fn a_local_value_without_the_console_is_named() {
        let text = KLDLOAD.replace(
            "quiet console=tty0 console=ttyS0,115200\tinherited from rpool/ROOT",
            "nomodeset\tlocal",
        );
        let (_, problem) = judge("rpool/ROOT/default", &parse(&text));
        assert!(problem.is_some_and(|p| p.contains("is set to \"nomodeset\" (local)")));
    }

    #[test]
    fn an_inherited_parent_reference_expands_at_its_owner() {
        let text = "rpool\tconsole=ttyS0\tlocal\n\
            rpool/ROOT\t%{parent} quiet\tlocal\n\
            rpool/ROOT/default\t%{parent} quiet\tinherited from rpool/ROOT\n";
        assert_eq!(
            effective("rpool/ROOT/default", &parse(text)),
            "console=ttyS0 quiet"
        );
    }
}
