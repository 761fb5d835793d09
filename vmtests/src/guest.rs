//! What the harness reads on a guest by running commands there, shared by the runs and the
//! checks: SSH host keys' fingerprints, and a search for a secret.

use crate::machine::Machine;
use anyhow::{Result, ensure};

/// The `SHA256:...` fingerprints in `ssh-keygen -l` output, sorted.
pub fn fingerprints(text: &str) -> Vec<String> {
    let mut keys: Vec<String> = text
        .split_whitespace()
        .filter(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// The shell command printing `ssh-keygen -l` of each SSH host key of the system whose root is
/// at `root` ("" for the running one), for [`fingerprints`].
pub fn host_keys_command(root: &str) -> String {
    format!("for k in {root}/etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f $k; done")
}

/// `passphrase` is in no file under /var/log, no journal line of this boot, no process's
/// command line or environment on the machine. The search's own command line must not hold it
/// either: it goes over reversed and base64-encoded, and grep reads it from a file.
pub fn passphrase_absent(m: &mut Machine, passphrase: &str) -> Result<String> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(passphrase.chars().rev().collect::<String>());
    let out = m.execute(&format!(
        "set -u; umask 077; echo {encoded} | base64 -d | rev > /run/kldload-pattern; \
         found=$(grep -rlF -f /run/kldload-pattern /var/log /proc/[0-9]*/cmdline \
                 /proc/[0-9]*/environ 2>/dev/null; \
                 journalctl -b -o cat --no-pager | grep -qF -f /run/kldload-pattern \
                 && echo 'the journal'); \
         rm -f /run/kldload-pattern; echo \"$found\"; [ -z \"$found\" ]"
    ))?;
    ensure!(
        out.status == 0,
        "the passphrase is in: {}",
        out.stdout.trim().replace('\n', ", ")
    );
    Ok("not in /var/log, this boot's journal, any /proc/*/cmdline or environ".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_from_ssh_keygen_sorted() {
        let out = "256 SHA256:zzz root@kldload-test (ED25519)\n\
                   3072 SHA256:aaa root@kldload-test (RSA)\n";
        assert_eq!(fingerprints(out), ["SHA256:aaa", "SHA256:zzz"]);
        assert!(fingerprints("").is_empty());
    }
}
