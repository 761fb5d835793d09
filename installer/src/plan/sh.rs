//! `kldload plan --format sh`: the plan as a bash script a person can read, edit and run by hand.
//! One function per step, named after it, each command preceded by the reason it is there.

use super::{Action, Contents, Plan, Stdin};

/// Quotes `word` for bash so it stays exactly one word.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line as bash would need it typed.
pub fn quote_line(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

const HEREDOC_END: &str = "KLDLOAD_EOF";

/// What kldload does in Rust for [`Action::DownloadRelease`], as the commands a person would
/// type: signify checks the signed list, the asset is picked from it and checked against it.
fn render_release(
    releases_url: &str,
    version: &str,
    series: Option<&str>,
    work: &std::path::Path,
    dest: &std::path::Path,
    out: &mut String,
) {
    use crate::zbm::release::{LTS_SERIES, SIGNED_LIST, SIGNING_KEY, asset_name, tag_url};
    let indent = "    ";
    let base = tag_url(releases_url, version);
    let key: Vec<String> = SIGNING_KEY.lines().map(quote).collect();
    let pick = match series {
        Some(s) => format!("asset={}", quote(&asset_name(version, s))),
        None => {
            let newest_first: Vec<&str> = LTS_SERIES.iter().rev().copied().collect();
            format!(
                "asset=$(for s in {}; do n={}; grep -qF \"($n)\" sha256.txt && {{ echo \"$n\"; break; }}; done)  # the newest long-term kernel listed",
                newest_first.join(" "),
                asset_name(version, "$s")
            )
        }
    };
    let lines = [
        format!("mkdir -p {}", quote(&work.to_string_lossy())),
        format!("cd {}", quote(&work.to_string_lossy())),
        format!("printf '%s\\n' {} > zfsbootmenu.pub", key.join(" ")),
        format!(
            "curl --fail --location --output {SIGNED_LIST} {}",
            quote(&format!("{base}/{SIGNED_LIST}"))
        ),
        // Debian's name for OpenBSD's signify (package signify-openbsd).
        format!("signify-openbsd -V -e -p zfsbootmenu.pub -x {SIGNED_LIST} -m sha256.txt"),
        pick,
        format!(
            "curl --fail --location --output \"$asset\" {}/\"$asset\"",
            quote(&base)
        ),
        "grep -F \"($asset)\" sha256.txt | sha256sum --check --strict".to_string(),
        format!(
            "install -m 0644 \"$asset\" {}",
            quote(&dest.to_string_lossy())
        ),
    ];
    out.push_str(&format!("{indent}(\n"));
    for line in lines {
        out.push_str(&format!("{indent}    {line}\n"));
    }
    out.push_str(&format!("{indent})\n"));
}

fn render_action(action: &Action, out: &mut String) {
    let indent = "    ";
    out.push_str(&format!("{indent}# {}\n", action.why()));
    match action {
        Action::Run { argv, stdin, .. } => {
            let cmd = quote_line(argv);
            match stdin {
                None => out.push_str(&format!("{indent}{cmd}\n")),
                Some(Stdin::Text { text }) => match text.strip_suffix('\n') {
                    Some(line) if !line.contains('\n') => {
                        out.push_str(&format!("{indent}printf '%s\\n' {} | {cmd}\n", quote(line)))
                    }
                    _ => out.push_str(&format!("{indent}printf '%s' {} | {cmd}\n", quote(text))),
                },
                Some(Stdin::File { path }) => out.push_str(&format!(
                    "{indent}{cmd} < {}\n",
                    quote(&path.to_string_lossy())
                )),
            }
        }
        Action::WriteFile {
            path,
            contents,
            mode,
            ..
        } => {
            let p = quote(&path.to_string_lossy());
            match contents {
                Contents::Text { text }
                    if text.ends_with('\n') && !text.lines().any(|l| l == HEREDOC_END) =>
                {
                    out.push_str(&format!(
                        "{indent}cat > {p} <<'{HEREDOC_END}'\n{text}{HEREDOC_END}\n"
                    ));
                }
                Contents::Text { text } => {
                    out.push_str(&format!("{indent}printf '%s' {} > {p}\n", quote(text)));
                }
                Contents::Secret { variable, .. } => {
                    out.push_str(&format!(
                        "{indent}(umask 077; printf '%s' \"${{{variable}:?set {variable} first}}\" > {p})\n"
                    ));
                }
            }
            out.push_str(&format!("{indent}chmod {mode:04o} {p}\n"));
        }
        Action::VerifySha256 { path, sha256, .. } => {
            out.push_str(&format!(
                "{indent}echo {} | sha256sum --check --strict -\n",
                quote(&format!("{sha256}  {}", path.display()))
            ));
        }
        Action::DownloadRelease {
            releases_url,
            version,
            kernel_series,
            work,
            dest,
            ..
        } => render_release(
            releases_url,
            version,
            kernel_series.as_deref(),
            work,
            dest,
            out,
        ),
        Action::EmbedCmdline { file, line, .. } => {
            out.push_str(&format!(
                "{indent}kldload set-zfsbootmenu-cmdline {} {}\n",
                quote(&file.to_string_lossy()),
                quote(line)
            ));
        }
        Action::AddToInitramfs { root, files, .. } => {
            let files: Vec<String> = files.iter().map(|f| quote(f)).collect();
            out.push_str(&format!(
                "{indent}kldload add-to-initramfs {} {}\n",
                quote(&root.to_string_lossy()),
                files.join(" ")
            ));
        }
        Action::CheckInitramfs {
            image, hostid_file, ..
        } => {
            out.push_str(&format!(
                "{indent}kldload check-initramfs {} {}\n",
                quote(&image.to_string_lossy()),
                quote(&hostid_file.to_string_lossy())
            ));
        }
        Action::SetEfiVariable { name, text, .. } => {
            let file = quote(&format!("{}/{name}", crate::efivars::EFIVARFS));
            out.push_str(&format!(
                "{indent}[ -e {file} ] && chattr -i {file} && rm {file}\n\
                 {indent}printf '\\x07\\x00\\x00\\x00%s' {} > {file}\n",
                quote(text),
            ));
        }
        Action::RemoveEfiVariable { name, .. } => {
            let file = quote(&format!("{}/{name}", crate::efivars::EFIVARFS));
            out.push_str(&format!(
                "{indent}if [ -e {file} ]; then chattr -i {file} && rm {file}; fi\n"
            ));
        }
        Action::LogTo {
            path: Some(path), ..
        } => {
            out.push_str(&format!(
                "{indent}exec > >(tee -a {}) 2>&1\n",
                quote(&path.to_string_lossy())
            ));
        }
        Action::LogTo { path: None, .. } => {
            out.push_str(&format!("{indent}exec 1>&3 2>&4\n"));
        }
    }
}

/// The environment variables the script reads secrets from.
fn secret_variables(plan: &Plan) -> Vec<String> {
    let mut vars: Vec<String> = plan
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .filter_map(|a| match a {
            Action::WriteFile {
                contents: Contents::Secret { variable, .. },
                ..
            } => Some(variable.clone()),
            _ => None,
        })
        .collect();
    vars.dedup();
    vars
}

/// Renders the whole plan.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("#!/usr/bin/env bash\n");
    out.push_str(&format!(
        "# kldload install plan: {} onto {}\n",
        plan.distro,
        plan.disks
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str("#\n# What `kldload install` would run, as a script to read, edit and run by hand (as root, on\n");
    out.push_str("# the live system): each step is a function named after it; `main` at the end calls them in order.\n");
    out.push_str("# THE DISKS NAMED ABOVE ARE WIPED.\n");
    for var in secret_variables(plan) {
        out.push_str(&format!("# Reads the secret {var} from the environment.\n"));
    }
    out.push_str("set -euo pipefail\n# Keep the terminal's stdout and stderr for when logging to the target stops.\nexec 3>&1 4>&2\n");
    // The recipe's steps keep their numbers (1: partition); a fetch before them is step 0.
    let first = match plan.steps.first().map(|s| s.id) {
        Some(crate::plan::StepId::FetchBootMenu) => 0,
        _ => 1,
    };
    for (i, step) in plan.steps.iter().enumerate() {
        out.push_str(&format!(
            "\n# Step {}: {}\n# {}\n{}() {{\n",
            i + first,
            step.title,
            step.why,
            step.id.name()
        ));
        for action in &step.actions {
            render_action(action, &mut out);
        }
        out.push_str("}\n");
    }
    out.push_str("\nmain() {\n");
    for step in &plan.steps {
        out.push_str(&format!("    {}\n", step.id.name()));
    }
    out.push_str("}\n\nmain \"$@\"\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("/dev/vda"), "/dev/vda");
        assert_eq!(quote("compression=lz4"), "compression=lz4");
        assert_eq!(quote(r"\EFI\ZBM\VMLINUZ.EFI"), r"'\EFI\ZBM\VMLINUZ.EFI'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
    }

    proptest! {
        /// Whatever a word holds, bash reads it back as exactly that one word.
        #[test]
        fn bash_reads_back_one_word(word in "[ -~\t]{0,24}") {
            let script = format!("printf '%s\\0' {}", quote(&word));
            let out = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
            prop_assert!(out.status.success());
            let mut expected = word.clone().into_bytes();
            expected.push(0);
            prop_assert_eq!(out.stdout, expected);
        }
    }
}
