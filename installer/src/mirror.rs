//! Which Debian mirror to use when the answer file and `--mirror` name none: the one the running
//! system's own apt sources use. No mirror host name is written into kldload itself.

use crate::config::MirrorUrl;
use std::fs;
use std::path::Path;

/// Debian release names and aliases a Debian archive serves.
const DEBIAN_SUITES: [&str; 13] = [
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
    "oldoldstable",
    "experimental",
];

/// One `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
}

impl AptSource {
    /// A Debian archive (not the security archive, not a third-party repository).
    fn is_debian_archive(&self) -> bool {
        !self.uri.contains("security")
            && self.suites.iter().any(|s| {
                let base = s.split(['-', '/']).next().unwrap_or_default();
                DEBIAN_SUITES.contains(&base)
            })
    }
}

/// Parses the one-line format: `deb [options] URI suite [component...]`.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push(AptSource {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
            });
        }
    }
    sources
}

/// Parses the deb822 format (`.sources` files): stanzas of `Key: value` lines.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let values: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = values,
                "uris" => uris = values,
                "suites" => suites = values,
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris {
                sources.push(AptSource {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    sources
}

/// Every `deb` source configured under `root` (normally `/`).
pub fn apt_sources(root: &Path) -> Vec<AptSource> {
    let apt = root.join("etc/apt");
    let mut sources =
        parse_one_line(&fs::read_to_string(apt.join("sources.list")).unwrap_or_default());
    let mut files: Vec<_> = fs::read_dir(apt.join("sources.list.d"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        match file.extension().and_then(|e| e.to_str()) {
            Some("list") => sources.extend(parse_one_line(&text)),
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    sources
}

/// The Debian mirror of the system rooted at `root`, if its apt sources name one.
pub fn host_debian_mirror(root: &Path) -> Option<MirrorUrl> {
    apt_sources(root)
        .into_iter()
        .filter(|s| s.is_debian_archive())
        .find_map(|s| MirrorUrl::new(s.uri).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line() {
        let deb822 = "Types: deb deb-src\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        let s = parse_deb822(deb822);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://mirror.invalid/debian");
        assert!(s[0].is_debian_archive());
        assert!(!s[1].is_debian_archive());
        let one = "# comment\ndeb [signed-by=/k.gpg arch=amd64] https://other.invalid/apt cloud-sdk-bookworm main\n\
                   deb http://mirror.invalid/debian trixie main contrib\n";
        let s = parse_one_line(one);
        assert_eq!(s.len(), 2);
        assert!(
            !s[0].is_debian_archive(),
            "a third-party suite is not Debian's"
        );
        assert!(s[1].is_debian_archive());
    }

    #[test]
    fn finds_the_mirror_in_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/apt/sources.list.d");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("a-vendor.list"),
            "deb https://vendor.invalid/apt nodistro main\n",
        )
        .unwrap();
        fs::write(
            d.join("debian.sources"),
            "Types: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm\nComponents: main\n",
        )
        .unwrap();
        let m = host_debian_mirror(dir.path()).unwrap();
        assert_eq!(m.as_str(), "http://mirror.invalid/debian");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(host_debian_mirror(empty.path()), None);
    }
}
