//! What `kldload report` takes out of a report before anyone sees it: serial numbers, WWNs,
//! host and user names (each replaced by the same placeholder everywhere, so the report keeps
//! its shape: `/dev/disk/by-id/ata-MODEL_<serial-1>-part2` still names the disk its pool
//! uses), then every IPv4, IPv6 and MAC address left in any text. Key material is never read
//! in the first place (only a key's format and location).

use regex::Regex;
use serde_json::Value;

/// The names to take out, found while the report was collected.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    pub serials: Vec<String>,
    pub wwns: Vec<String>,
    pub hostnames: Vec<String>,
    pub users: Vec<String>,
}

/// The replacements, longest name first (so a hostname that contains a user's name goes
/// whole), and the address patterns.
pub struct Redactor {
    names: Vec<(String, String, bool)>,
    addresses: Vec<(Regex, &'static str)>,
}

impl Redactor {
    pub fn new(secrets: &Secrets) -> Redactor {
        let mut names: Vec<(String, String, bool)> = Vec::new();
        // Each secret with the other forms it takes (one placeholder for all of them).
        let mut add = |list: Vec<Vec<String>>, kind: &str, whole_word: bool| {
            let mut n = 0;
            for forms in list {
                // A name too short to be told from ordinary words is left (`a`, `pi`).
                let forms: Vec<String> = (forms.into_iter())
                    .filter(|f| f.len() >= 3 && !names.iter().any(|(s, _, _)| s == f))
                    .collect();
                if forms.is_empty() {
                    continue;
                }
                n += 1;
                for f in forms {
                    names.push((f, format!("<{kind}-{n}>"), whole_word));
                }
            }
        };
        // Serials and WWNs sit inside device names (`virtio-<serial>-part2`): anywhere. udev's
        // by-id names write a serial's spaces as `_`, and a WWN without its `0x` (`scsi-35000c5...`).
        let serials = (secrets.serials.iter())
            .map(|s| {
                let s = s.trim().to_string();
                vec![s.replace(' ', "_"), s]
            })
            .collect();
        add(serials, "serial", false);
        let wwns = (secrets.wwns.iter())
            .map(|w| {
                let w = w.trim().to_string();
                vec![w.trim_start_matches("0x").to_string(), w]
            })
            .collect();
        add(wwns, "wwn", false);
        let one = |list: &[String]| list.iter().map(|s| vec![s.clone()]).collect::<Vec<_>>();
        add(one(&secrets.hostnames), "hostname", true);
        add(one(&secrets.users), "user", true);
        names.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.len()));
        let addresses = vec![
            (
                Regex::new(r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b").expect("valid"),
                "<mac>",
            ),
            // The firmware names a network boot entry by its MAC without colons.
            (
                Regex::new(r"(?i)\bMAC:[0-9a-f]{12}\b").expect("valid"),
                "MAC:<mac>",
            ),
            (
                Regex::new(r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b")
                    .expect("valid"),
                "<ipv4>",
            ),
            // Full or `::`-shortened IPv6; at least four groups or a `::` (times such as
            // 08:12:33 have two colons and no `::`).
            (
                Regex::new(
                    r"(?i)\b(?:[0-9a-f]{1,4}:){4,7}[0-9a-f]{1,4}\b|(?i)\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?\b|::(?:[0-9a-f]{1,4}:)*[0-9a-f]{1,4}\b",
                )
                .expect("valid"),
                "<ipv6>",
            ),
        ];
        Redactor { names, addresses }
    }

    /// `text` with every secret and address replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, placeholder, whole_word) in &self.names {
            out = if *whole_word {
                replace_words(&out, name, placeholder)
            } else {
                out.replace(name.as_str(), placeholder)
            };
        }
        for (pattern, placeholder) in &self.addresses {
            out = pattern.replace_all(&out, *placeholder).into_owned();
        }
        out
    }

    /// Every string in `value` (keys included) redacted.
    pub fn value(&self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.value(&mut v);
                    map.insert(self.text(&k), v);
                }
            }
            _ => {}
        }
    }
}

/// `text` with `name` replaced where it stands as a word: not inside a longer run of letters
/// and digits (a user `ann` stays in `annex`, goes in `/home/ann`, `ann-laptop`, `ann_x7k2`).
fn replace_words(text: &str, name: &str, placeholder: &str) -> String {
    // `_` joins names (Ubuntu's rpool/USERDATA/<user>_<id>): not a word character here.
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::new();
    // The text's character before `rest` (the end of the last match, when `rest` starts there).
    let mut last: Option<char> = None;
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().last().or(last);
        let after = rest[at + name.len()..].chars().next();
        out.push_str(&rest[..at]);
        out.push_str(if word(before) || word(after) {
            name
        } else {
            placeholder
        });
        last = name.chars().last();
        rest = &rest[at + name.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(&Secrets {
            serials: vec!["kldload-target".into(), "S4EWNX0R123456".into()],
            wwns: vec!["0x5002538e40a1b2c3".into()],
            hostnames: vec!["ann-laptop".into()],
            users: vec!["ann".into(), "bo".into()],
        })
    }

    #[test]
    fn names_are_replaced_the_same_way_everywhere() {
        let r = redactor();
        assert_eq!(
            r.text("/dev/disk/by-id/virtio-kldload-target-part2"),
            "/dev/disk/by-id/virtio-<serial-1>-part2"
        );
        assert_eq!(
            r.text("ata-Samsung_SSD_870_EVO_S4EWNX0R123456-part1 wwn-0x5002538e40a1b2c3"),
            "ata-Samsung_SSD_870_EVO_<serial-2>-part1 wwn-<wwn-1>"
        );
        assert_eq!(r.text("hostname: 'ann-laptop'"), "hostname: '<hostname-1>'");
        assert_eq!(
            r.text("rpool/home/ann /home/ann annex rpool/USERDATA/ann_x7k2l9"),
            "rpool/home/<user-1> /home/<user-1> annex rpool/USERDATA/<user-1>_x7k2l9"
        );
        assert_eq!(
            r.text("scsi-35002538e40a1b2c3-part2"),
            "scsi-3<wwn-1>-part2"
        );
        // Too short to tell from words: kept.
        assert_eq!(r.text("bo"), "bo");
    }

    #[test]
    fn addresses_go_versions_and_times_stay() {
        let r = redactor();
        assert_eq!(
            r.text("ip=10.0.2.15::10.0.2.2:255.255.255.0 link/ether 52:54:00:12:34:56"),
            "ip=<ipv4>::<ipv4>:<ipv4> link/ether <mac>"
        );
        assert_eq!(
            r.text("UEFI PXEv4 (MAC:525400123456)"),
            "UEFI PXEv4 (MAC:<mac>)"
        );
        assert_eq!(
            r.text("inet6 fe80::5054:ff:fe12:3456/64 and 2001:db8:0:0:1:0:0:1"),
            "inet6 <ipv6>/64 and <ipv6>"
        );
        let kept = "zfs-2.3.4-1 kernel 6.12.48+deb13-amd64 scrub on Fri Nov 27 08:12:33 2026 \
                    guid 9219027250690550647 uuid 762943d0-2e69-4fb0-bada-793c539f61e8";
        assert_eq!(r.text(kept), kept);
    }

    #[test]
    fn json_keys_and_values() {
        let r = redactor();
        let mut v = serde_json::json!({
            "serial": "kldload-target",
            "by_user": {"rpool/home/ann": ["10.1.2.3"]},
            "size": 17179869184u64
        });
        r.value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "serial": "<serial-1>",
                "by_user": {"rpool/home/<user-1>": ["<ipv4>"]},
                "size": 17179869184u64
            })
        );
    }
}
