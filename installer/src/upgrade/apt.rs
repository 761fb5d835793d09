//! apt, pointed at the update alone. Every apt command of an upgrade reads its sources, lists
//! and downloaded packages from one directory of its own ([`IsolatedApt::dir`]) and the
//! system's package database as it is: the machine's own apt sources are not read (an offline
//! machine upgrades from a USB stick), and nothing of the system's apt state is written until
//! the install into the new boot environment. The update's signature is checked by apt itself,
//! against the key the install put on the machine (`signed-by`), as it checks Debian's.

use std::path::{Path, PathBuf};

/// apt's configuration for one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatedApt {
    /// Its sources list, lists and downloaded packages.
    pub dir: PathBuf,
}

/// Where an update is read from: a directory (a USB stick's, or any path) or an http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateSource {
    Directory(PathBuf),
    Url(String),
}

impl UpdateSource {
    /// A source as given on the command line: `http://` or `https://` is a URL, anything else a
    /// directory, which must exist and hold the update's InRelease.
    pub fn parse(given: &str) -> Result<UpdateSource, String> {
        if given.starts_with("http://") || given.starts_with("https://") {
            if given.contains(char::is_whitespace) {
                return Err(format!("the update URL {given:?} has a space in it"));
            }
            return Ok(UpdateSource::Url(given.trim_end_matches('/').to_string()));
        }
        let dir = Path::new(given);
        if !dir.is_dir() {
            return Err(format!(
                "no update at {given}: not a directory. Give the directory `cargo xtask \
                 build-update` made (copied to a USB stick, say), or its http(s) URL"
            ));
        }
        if !dir.join("InRelease").is_file() {
            return Err(format!(
                "{given} holds no update: it has no InRelease file. Give the directory `cargo \
                 xtask build-update` made, the one with Packages, InRelease and the .deb files"
            ));
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| format!("{given}: {e}"))?;
        Ok(UpdateSource::Directory(dir))
    }

    /// The URI apt reads it at.
    pub fn uri(&self) -> String {
        match self {
            UpdateSource::Directory(dir) => format!("file:{}", dir.display()),
            UpdateSource::Url(url) => url.clone(),
        }
    }
}

impl IsolatedApt {
    pub fn new(dir: impl Into<PathBuf>) -> IsolatedApt {
        IsolatedApt { dir: dir.into() }
    }

    /// The one-line sources list: the update's flat repository, trusted only with `key`.
    pub fn sources_list(source: &UpdateSource, key: &str) -> String {
        format!("deb [signed-by={key}] {} ./\n", source.uri())
    }

    pub fn sources_file(&self) -> PathBuf {
        self.dir.join("sources.list")
    }

    /// Directories apt expects to exist under [`IsolatedApt::dir`].
    pub fn directories(&self) -> Vec<PathBuf> {
        ["sources.list.d", "lists/partial", "archives/partial"]
            .iter()
            .map(|d| self.dir.join(d))
            .collect()
    }

    /// The options that point apt at this directory only. No package cache files are written
    /// (the empty pkgcache names), and apt runs its downloads as root, so a USB stick's files
    /// are readable whatever their owner.
    fn options(&self) -> Vec<String> {
        let at = |d: &str| self.dir.join(d).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", at("sources.list")),
            format!("Dir::Etc::SourceParts={}", at("sources.list.d")),
            format!("Dir::State::Lists={}", at("lists")),
            format!("Dir::Cache::Archives={}", at("archives")),
            "Dir::Cache::pkgcache=".to_string(),
            "Dir::Cache::srcpkgcache=".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    /// `apt-get` with these options, then `args`.
    pub fn apt_get(&self, args: &[&str]) -> Vec<String> {
        self.command("apt-get", args)
    }

    /// `apt-cache` with these options, then `args`.
    pub fn apt_cache(&self, args: &[&str]) -> Vec<String> {
        self.command("apt-cache", args)
    }

    fn command(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut argv = vec![program.to_string()];
        argv.extend(self.options());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }
}

/// The lines of apt's output that say why it failed (its `E:` and `W:` lines, and sqv's or
/// gpgv's about the signature), at most 8.
pub fn apt_errors(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("E:")
                || l.starts_with("W:")
                || l.starts_with("Err:")
                || l.contains("signature")
                || l.contains("Hash Sum mismatch")
        })
        .take(8)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_needs_its_inrelease_and_a_url_is_taken_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let err = UpdateSource::parse(path).unwrap_err();
        assert!(err.contains("has no InRelease"), "{err}");
        std::fs::write(dir.path().join("InRelease"), "").unwrap();
        let source = UpdateSource::parse(path).unwrap();
        assert_eq!(
            source.uri(),
            format!("file:{}", dir.path().canonicalize().unwrap().display())
        );
        assert!(
            UpdateSource::parse("/nonexistent/update")
                .unwrap_err()
                .contains("not a directory")
        );
        assert_eq!(
            UpdateSource::parse("https://updates.example/debian-13/").unwrap(),
            UpdateSource::Url("https://updates.example/debian-13".into())
        );
    }

    #[test]
    fn apt_reads_only_the_update_trusting_only_its_key() {
        let source = UpdateSource::Url("http://10.0.2.2:8080/update".into());
        assert_eq!(
            IsolatedApt::sources_list(&source, "/usr/local/share/kldload/update-signing-key.gpg"),
            "deb [signed-by=/usr/local/share/kldload/update-signing-key.gpg] \
             http://10.0.2.2:8080/update ./\n"
        );
        let apt = IsolatedApt::new("/run/kldload/update");
        let argv = apt.apt_get(&["update"]).join(" ");
        for option in [
            "-o Dir::Etc::SourceList=/run/kldload/update/sources.list",
            "-o Dir::Etc::SourceParts=/run/kldload/update/sources.list.d",
            "-o Dir::State::Lists=/run/kldload/update/lists",
            "-o Dir::Cache::Archives=/run/kldload/update/archives",
        ] {
            assert!(argv.contains(option), "{option} not in {argv}");
        }
        assert!(argv.starts_with("apt-get ") && argv.ends_with(" update"));
    }

    #[test]
    fn apts_reasons_are_picked_from_its_output() {
        // apt 3.0 with sqv, on an InRelease signed by another key.
        let out = "Get:1 file:/media/update ./ InRelease [3,321 B]\n\
                   Err:1 file:/media/update ./ InRelease\n  \
                   Sub-process /usr/bin/sqv returned an error code (1), error message is: Missing key 0123\n\
                   Reading package lists...\n\
                   W: OpenPGP signature verification failed: file:/media/update ./ InRelease: Sub-process /usr/bin/sqv returned an error code (1)\n\
                   E: The repository 'file:/media/update ./ InRelease' is not signed.\n";
        let errors = apt_errors(out);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("Err:1"));
        assert!(errors[2].starts_with("E: The repository"));
    }
}
