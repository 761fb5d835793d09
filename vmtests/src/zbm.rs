//! ZFSBootMenu driven over the serial console the way a person drives it: read the screen (the
//! console's emulated terminal), press keys, wait for the next screen. Every key sent is named in
//! the transcript, and every wait has a timeout that fails with the screen as it was.
//!
//! The keys are those of ZFSBootMenu's header and online help. Each Ctrl key also works as Alt
//! (Escape then the letter), which is what this driver sends: on a serial line Ctrl+S is XOFF.

use crate::machine::Machine;
use crate::run::{LOGIN_TIMEOUT, MENU_TIMEOUT};
use anyhow::{Context, Result, ensure};
use std::time::Duration;

/// How long a screen may take to appear once a key was pressed (TCG is slow at drawing fzf).
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after a passphrase prompt appears its terminal is ready for keys.
const PROMPT_SETTLE: Duration = Duration::from_millis(500);

/// What `zfs load-key` asks with, in ZFSBootMenu and in an initramfs alike.
fn passphrase_prompt(encryption_root: &str) -> String {
    format!("Enter passphrase for '{encryption_root}':")
}

pub struct Zbm<'m> {
    pub m: &'m mut Machine,
}

/// The boot environment a countdown screen names: "Booting <be> in <n> seconds".
pub fn countdown_target(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Booting ")?;
        let (be, tail) = rest.split_once(" in ")?;
        tail.contains("second").then(|| be.trim().to_string())
    })
}

/// The seconds each countdown line in `text` starts from ("Booting <be> in <n> seconds"), in
/// the order drawn: what a console transcript shows of the countdown.
/// ZFSBootMenu colours the name and the number, so terminal escape sequences are dropped first.
pub fn countdown_seconds(text: &str) -> Vec<u32> {
    let plain = crate::console::plain_text(text);
    let re = regex::Regex::new(r"Booting \S+ in (\d+) seconds?").expect("a valid regex");
    re.captures_iter(&plain)
        .filter_map(|c| c[1].parse().ok())
        .collect()
}

/// The item fzf's pointer marks as selected: `>` at the start of a line (fzf 0.38, as in
/// ZFSBootMenu built on Debian 12) or `▌` (fzf 0.60, built on Debian 13).
pub fn selected_item(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        let rest = l.strip_prefix('>').or_else(|| l.strip_prefix('▌'))?;
        words(rest, |w| w.contains('/')).into_iter().next()
    })
}

/// How many items fzf counts as matching `query`, from its prompt line (`> query  < 1/2 (0/2)`
/// or `> query  1/3`).
pub fn matches_for_query(screen: &str, query: &str) -> Option<usize> {
    let line = screen.lines().find(|l| l.contains(query))?;
    match_count(&line[line.find(query)? + query.len()..])
}

/// fzf's count of matching items on the screen's prompt line (its last line with a count):
/// `BE >   < 3/3` is 3.
pub fn fzf_matched(screen: &str) -> Option<usize> {
    screen.lines().rev().find_map(match_count)
}

/// The first `matched/total` word of `text`.
fn match_count(text: &str) -> Option<usize> {
    text.split_whitespace().find_map(|w| {
        let (matched, total) = w.split_once('/')?;
        total.parse::<usize>().ok()?;
        matched.parse().ok()
    })
}

/// How many rows of a list fit on the 24-line screen under the header and preview.
const VISIBLE_ROWS: usize = 10;

/// Whether a list's rows are all drawn: fzf shows its count before it has drawn every row, so
/// `found` (the items read off the screen) must reach it (or fill the visible rows).
fn all_rows_drawn(screen: &str, found: usize) -> bool {
    fzf_matched(screen).is_some_and(|n| found >= n.min(VISIBLE_ROWS))
}

/// Whether the line editor under ZFSBootMenu's `prompt` (its `zfsbootmenu-input`: bash's
/// `read -e -i PROPOSED -p "> "`) is ready for keys. ZFSBootMenu echoes `prompt` before it
/// starts the editor, and until readline has switched the terminal to raw mode the kernel's line
/// discipline takes Ctrl+U as its own kill character on an empty line: a CI run typed Ctrl+U and
/// a name there and got the name appended to the proposed one. Readline draws its `> ` prompt
/// (and the proposed text) only once the terminal is raw, so that line below `prompt` is the sign.
pub fn line_editor_ready(screen: &str, prompt: &str) -> bool {
    let lines: Vec<&str> = screen.lines().collect();
    // Below the last time the prompt was echoed (an earlier one may still be on the screen).
    (lines.iter().rposition(|line| line.contains(prompt))).is_some_and(|at| {
        lines[at + 1..]
            .iter()
            .any(|l| l.trim_start().starts_with('>'))
    })
}

/// Words on a screen that look like `pool/ROOT/...` datasets (boot environments), in order.
pub fn boot_environments(screen: &str) -> Vec<String> {
    words(screen, |w| w.contains("/ROOT/") && !w.contains('@'))
}

/// Words on a screen that are snapshots (`dataset@name`), in order.
pub fn snapshots(screen: &str) -> Vec<String> {
    words(screen, |w| {
        w.split_once('@')
            .is_some_and(|(d, s)| d.contains('/') && !s.is_empty())
    })
}

/// Words on a screen that name kernels (`vmlinuz-...`), in order.
pub fn kernels(screen: &str) -> Vec<String> {
    words(screen, |w| {
        w.starts_with("vmlinuz-") || w.contains("/vmlinuz-")
    })
    .into_iter()
    .map(|w| w.rsplit('/').next().unwrap_or(&w).to_string())
    .collect()
}

/// The screen's words made of the characters of dataset, snapshot and file names (so fzf's
/// borders, pointers and colours' leftovers never stick to a name).
fn words(screen: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "/_-.:@+".contains(c);
    let mut found: Vec<String> = Vec::new();
    for word in screen.split(|c: char| !name_char(c)) {
        let word = word.trim_matches(|c: char| c == ':' || c == '.');
        if !word.is_empty() && keep(word) && !found.iter().any(|f| f == word) {
            found.push(word.to_string());
        }
    }
    found
}

/// How a passphrase reaches ZFSBootMenu ([`Zbm::unlock_once`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocking {
    /// At the prompt it opens when its countdown ends.
    AtCountdown,
    /// A wrong passphrase first, which must be refused and asked again, then the right one.
    WrongFirst,
    /// The countdown stopped, the menu opened (the passphrase typed where ZFSBootMenu asks for
    /// it), and the boot environment named booted from the menu.
    ViaMenu(String),
}

/// A kernel in ZFSBootMenu's kernel list: the newest or oldest (in its `sort -V` order), or one
/// by its file name in /boot. In a scenario file, `"newest"`, `"oldest"` or the file name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum KernelChoice {
    #[default]
    Newest,
    Oldest,
    Named(String),
}

impl From<String> for KernelChoice {
    fn from(s: String) -> KernelChoice {
        match s.as_str() {
            "newest" => KernelChoice::Newest,
            "oldest" => KernelChoice::Oldest,
            _ => KernelChoice::Named(s),
        }
    }
}

impl From<KernelChoice> for String {
    fn from(k: KernelChoice) -> String {
        k.to_string()
    }
}

impl std::fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelChoice::Newest => f.write_str("newest"),
            KernelChoice::Oldest => f.write_str("oldest"),
            KernelChoice::Named(name) => f.write_str(name),
        }
    }
}

impl KernelChoice {
    /// The kernel it names among those ZFSBootMenu `listed`.
    pub fn pick(&self, listed: &[String]) -> Result<String> {
        let mut sorted = listed.to_vec();
        sorted.sort_by(|a, b| kldload::zbm::kernels::version_order(a, b));
        let found = match self {
            KernelChoice::Newest => sorted.last(),
            KernelChoice::Oldest => sorted.first(),
            KernelChoice::Named(name) => sorted.iter().find(|k| *k == name),
        };
        found
            .cloned()
            .with_context(|| format!("no kernel \"{self}\" in the list: {listed:?}"))
    }
}

impl<'m> Zbm<'m> {
    pub fn new(m: &'m mut Machine) -> Zbm<'m> {
        Zbm { m }
    }

    /// Sends `keys`, named in the transcript as `what`.
    fn press(&mut self, what: &str, keys: &str) -> Result<()> {
        self.m.console.mark(&format!("ZFSBootMenu: {what}"));
        self.m.console.send(keys)
    }

    /// Alt+`letter`: Escape then the letter, in one write.
    fn alt(&mut self, what: &str, letter: char) -> Result<()> {
        self.press(what, &format!("\x1b{letter}"))
    }

    /// Sends `keys` that leave fzf for a prompt of ZFSBootMenu's own. The emulated screen is
    /// cleared first: fzf draws on the alternate screen, and leaving it brings back the main
    /// screen as it was, perhaps still showing the same prompt from the last operation.
    fn leave_list(&mut self, what: &str, keys: &str) -> Result<()> {
        self.m.console.clear_screen();
        self.press(what, keys)
    }

    /// Waits for a screen; puts it in the transcript, as a person would have seen it.
    pub fn wait(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
        self.wait_within(what, ready, SCREEN_TIMEOUT)
    }

    /// [`Self::wait`], for at most `timeout`.
    fn wait_within(
        &mut self,
        what: &str,
        ready: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let screen = self.m.console.wait_for_screen(what, ready, timeout)?;
        self.m
            .console
            .mark(&format!("ZFSBootMenu screen: {what}\n{screen}"));
        Ok(screen)
    }

    /// At the passphrase prompt of an encrypted pool (`zfs load-key`'s "Enter passphrase for
    /// '<root>':", which ZFSBootMenu opens when its countdown ends), types `passphrase` and Enter.
    /// Only once the prompt is on the console, and a moment after: the prompt is printed before
    /// echo is turned off, which discards what was typed until then. The transcript records
    /// that a passphrase was typed, never its text (the prompt does not echo it).
    pub fn type_passphrase(
        &mut self,
        encryption_root: &str,
        passphrase: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.m
            .console
            .wait_for(&passphrase_prompt(encryption_root), timeout)?;
        std::thread::sleep(PROMPT_SETTLE);
        self.m.console.mark(&format!(
            "ZFSBootMenu: typed a passphrase for {encryption_root} (its text not recorded)"
        ));
        self.m.console.send_line(passphrase)
    }

    /// Escape at the countdown of a machine whose pool is encrypted: ZFSBootMenu opens its
    /// menu, or first asks for `encryption_root`'s passphrase (to list its boot environments'
    /// kernels), which is then typed. Returns whether it asked.
    pub fn open_menu_asking_passphrase(
        &mut self,
        encryption_root: &str,
        passphrase: &str,
    ) -> Result<bool> {
        self.press("Escape: stop the countdown, open the menu", "\x1b")?;
        let prompt = passphrase_prompt(encryption_root);
        let screen = self.wait("the menu, or a passphrase prompt", |s| {
            s.contains("BE >") || s.contains(&prompt)
        })?;
        let asked = !screen.contains("BE >");
        if asked {
            self.type_passphrase(encryption_root, passphrase, SCREEN_TIMEOUT)?;
        }
        self.wait_for_menu()?;
        Ok(asked)
    }

    /// Waits for the countdown screen; returns the boot environment it will boot.
    pub fn wait_for_countdown(&mut self, timeout: Duration) -> Result<String> {
        let screen = self.m.console.wait_for_screen(
            "ZFSBootMenu's countdown",
            |s| countdown_target(s).is_some(),
            timeout,
        )?;
        Ok(countdown_target(&screen).expect("checked by the wait"))
    }

    /// Stops the countdown with Escape; returns the boot environments the menu lists.
    pub fn open_menu(&mut self) -> Result<Vec<String>> {
        self.press("Escape: stop the countdown, open the menu", "\x1b")?;
        self.wait_for_menu()
    }

    /// Waits for the main menu (its prompt `BE >` and its list of boot environments); returns
    /// them. The prompt tells it from the kernel list, whose prompt is `<be> >`.
    pub fn wait_for_menu(&mut self) -> Result<Vec<String>> {
        self.wait_for_menu_within(SCREEN_TIMEOUT)
    }

    /// [`Self::wait_for_menu`], for at most `timeout` (from a boot: the firmware and
    /// ZFSBootMenu's own boot come first).
    pub fn wait_for_menu_within(&mut self, timeout: Duration) -> Result<Vec<String>> {
        let screen = self.wait_within(
            "the menu of boot environments",
            |s| {
                let listed = boot_environments(s).len();
                s.contains("BE >") && listed > 0 && all_rows_drawn(s, listed)
            },
            timeout,
        )?;
        Ok(boot_environments(&screen))
    }

    /// Narrows the current list to entries matching `text` (fzf's query), so the first match
    /// is selected.
    pub fn filter(&mut self, text: &str) -> Result<()> {
        self.press(&format!("type {text:?} to filter the list"), text)?;
        Ok(())
    }

    /// Return: boots the selected boot environment (or kernel, or runs a snapshot's default).
    pub fn enter(&mut self, what: &str) -> Result<()> {
        self.press(what, "\r")
    }

    /// Selects `be` in the main menu and boots it.
    pub fn boot(&mut self, be: &str) -> Result<()> {
        self.select(be)?;
        self.enter(&format!("Return: boot {be}"))
    }

    /// Selects `item` in the current list: fzf's query `^item$` matches that line exactly. Done
    /// when fzf counts one match for the typed query and its pointer is on `item` (the pointer's
    /// line may run into the preview's border label, so its word need only start with `item`).
    pub fn select(&mut self, item: &str) -> Result<()> {
        let query = format!("^{item}$");
        self.filter(&query)?;
        self.wait(&format!("{item} selected"), |s| {
            matches_for_query(s, &query) == Some(1)
                && selected_item(s).is_some_and(|w| w.starts_with(item))
        })?;
        Ok(())
    }

    /// Alt+S on the selected boot environment: its snapshots, as listed.
    pub fn snapshots(&mut self) -> Result<Vec<String>> {
        self.alt("Alt+S: snapshots of the selected boot environment", 's')?;
        let screen = self.wait("the snapshot list", |s| {
            let listed = snapshots(s).len();
            s.contains("Snapshot >") && listed > 0 && all_rows_drawn(s, listed)
        })?;
        Ok(snapshots(&screen))
    }

    /// Return on the selected snapshot: duplicates it (zfs send | zfs recv) into a new boot
    /// environment, accepting ZFSBootMenu's proposed name (`<be>_NEW`); returns the boot
    /// environments the menu lists afterwards.
    pub fn duplicate_selected_snapshot(&mut self) -> Result<Vec<String>> {
        self.leave_list("Return: duplicate the selected snapshot", "\r")?;
        self.wait_for_name_prompt()?;
        self.enter("Return: take the proposed name")?;
        self.wait_for_menu_or_snapshots()
    }

    /// The prompt for a new boot environment's name, after duplicate or clone, with its line
    /// editor ready for keys.
    fn wait_for_name_prompt(&mut self) -> Result<String> {
        self.wait("the new boot environment's name prompt", |s| {
            line_editor_ready(s, "New boot environment name")
        })
    }

    /// After a snapshot operation ZFSBootMenu goes back to a list; from the snapshot list,
    /// Escape leads to the menu. Returns the menu's boot environments.
    fn wait_for_menu_or_snapshots(&mut self) -> Result<Vec<String>> {
        let screen = self.wait("a list after the operation", |s| {
            s.contains("BE >") || s.contains("Snapshot >")
        })?;
        if screen.contains("Snapshot >") {
            return self.back();
        }
        // fzf draws its prompt before the rows: read the list once it is all there (a CI run
        // read it too early and found none).
        self.wait_for_menu()
    }

    /// Alt+C on the selected snapshot: clones it (`zfs clone`, so the snapshot stays its origin)
    /// into the boot environment `<parent>/name`, typed over ZFSBootMenu's proposed name; returns
    /// the boot environments the menu lists afterwards.
    pub fn clone_selected_snapshot(&mut self, name: &str) -> Result<Vec<String>> {
        self.leave_list("Alt+C: clone the selected snapshot", "\x1bc")?;
        self.wait_for_name_prompt()?;
        // Ctrl+U empties the line readline offers (the proposed `<be>_NEW`).
        self.press(
            &format!("Ctrl+U, then type {name:?} and Return"),
            &format!("\x15{name}\r"),
        )?;
        self.wait_for_menu_or_snapshots()
    }

    /// Alt+R on the selected snapshot: rolls its boot environment back to it, typing the word
    /// ZFSBootMenu asks for (`ROLLBACK`) at its warning; returns the boot environments listed
    /// afterwards.
    pub fn rollback_to_selected_snapshot(&mut self) -> Result<Vec<String>> {
        self.leave_list("Alt+R: roll back to the selected snapshot", "\x1br")?;
        self.wait("the rollback warning", |s| s.contains("Type ROLLBACK"))?;
        self.press("type ROLLBACK and Return", "ROLLBACK\r")?;
        self.wait_for_menu_or_snapshots()
    }

    /// Alt+D on the selected kernel of the kernel list: makes it the boot environment's default
    /// (`org.zfsbootmenu:kernel`); ZFSBootMenu goes back to the menu, whose boot environments
    /// are returned.
    pub fn set_selected_kernel_as_default(&mut self) -> Result<Vec<String>> {
        self.alt("Alt+D: make the selected kernel the default", 'd')?;
        self.wait_for_menu()
    }

    /// Alt+U in the kernel list: clears the boot environment's default kernel, so the newest
    /// boots again; back to the menu.
    pub fn clear_default_kernel(&mut self) -> Result<Vec<String>> {
        self.alt("Alt+U: clear the default kernel", 'u')?;
        self.wait_for_menu()
    }

    /// Alt+E on the selected boot environment: edits the kernel command line of the next boot
    /// only, appending `words` to the line ZFSBootMenu offers; back to the menu.
    pub fn append_to_command_line_once(&mut self, words: &str) -> Result<Vec<String>> {
        self.leave_list("Alt+E: edit the kernel command line for one boot", "\x1be")?;
        self.wait("the command line editor", |s| {
            line_editor_ready(s, "New kernel command line")
        })?;
        self.press(
            &format!("append {words:?} and Return"),
            &format!(" {words}\r"),
        )?;
        self.wait_for_menu()
    }

    /// Alt+R in the main menu: leaves the menu for ZFSBootMenu's recovery shell.
    pub fn open_recovery_shell(&mut self) -> Result<()> {
        self.leave_list("Alt+R: the recovery shell", "\x1br")?;
        self.wait("the recovery shell", |s| {
            s.contains("to return to ZFSBootMenu")
        })?;
        Ok(())
    }

    /// Types `command` in the recovery shell and waits until `done` accepts the screen (within
    /// `timeout`); returns it.
    pub fn recovery_shell_run(
        &mut self,
        command: &str,
        done: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        self.press(
            &format!("type {command:?} and Return"),
            &format!("{command}\r"),
        )?;
        self.wait_within(&format!("the output of {command:?}"), done, timeout)
    }

    /// `exit` in the recovery shell: ZFSBootMenu's menu comes back; returns its boot environments.
    pub fn leave_recovery_shell(&mut self) -> Result<Vec<String>> {
        self.press("type exit and Return: back to ZFSBootMenu", "exit\r")?;
        self.wait_for_menu()
    }

    /// Alt+K on the selected boot environment: its kernels, as listed.
    pub fn kernels(&mut self) -> Result<Vec<String>> {
        self.alt("Alt+K: kernels of the selected boot environment", 'k')?;
        self.wait_for_kernel_list()
    }

    /// Waits for the kernel list to be drawn; returns the kernels it lists.
    pub fn wait_for_kernel_list(&mut self) -> Result<Vec<String>> {
        // Its header offers "set default"; the main menu's does not.
        let screen = self.wait("the kernel list", |s| {
            let listed = kernels(s).len();
            s.contains("set default") && listed > 0 && all_rows_drawn(s, listed)
        })?;
        Ok(kernels(&screen))
    }

    /// In the open snapshot list, selects `snapshot` and duplicates it into a new boot
    /// environment `<be>_NEW`, which must then be listed; returns what the list shows.
    pub fn duplicate_snapshot(&mut self, snapshot: &str) -> Result<Vec<String>> {
        self.select(snapshot)?;
        let listed = self.duplicate_selected_snapshot()?;
        let new_be = format!("{}_NEW", snapshot.split('@').next().unwrap_or_default());
        ensure!(listed.contains(&new_be), "listed: {listed:?}");
        Ok(listed)
    }

    /// In the open kernel list, selects the kernel `choice` names; returns its file name.
    fn select_kernel(&mut self, choice: &KernelChoice) -> Result<String> {
        let listed = self.wait_for_kernel_list()?;
        let name = choice.pick(&listed)?;
        // The list shows each kernel by its path.
        self.select(&format!("/boot/{name}"))?;
        Ok(name)
    }

    /// In the open kernel list, boots the kernel `choice` names; returns its file name.
    pub fn boot_kernel(&mut self, choice: &KernelChoice) -> Result<String> {
        let name = self.select_kernel(choice)?;
        self.enter(&format!("Return: boot {name}"))?;
        Ok(name)
    }

    /// In the open kernel list, makes the kernel `choice` names the boot environment's default
    /// (Alt+D); back in the menu. Returns its file name.
    pub fn make_kernel_default(&mut self, choice: &KernelChoice) -> Result<String> {
        let name = self.select_kernel(choice)?;
        self.set_selected_kernel_as_default()?;
        Ok(name)
    }

    /// Unlocks an encrypted boot environment whose encryption root is `root` with `passphrase`
    /// the way `how` says, then waits for the login prompt and logs in as root: the boot must
    /// not ask again (neither ZFSBootMenu nor the boot's own `zfs load-key` or
    /// systemd-ask-password), one prompt a boot.
    pub fn unlock_once(&mut self, root: &str, passphrase: &str, how: &Unlocking) -> Result<()> {
        match how {
            Unlocking::AtCountdown => self.type_passphrase(root, passphrase, MENU_TIMEOUT)?,
            Unlocking::WrongFirst => {
                self.type_passphrase(root, "not-the-passphrase", MENU_TIMEOUT)?;
                self.m
                    .console
                    .wait_for("Incorrect key provided", SCREEN_TIMEOUT)
                    .context("ZFSBootMenu did not refuse a wrong passphrase")?;
                self.type_passphrase(root, passphrase, MENU_TIMEOUT)?;
            }
            Unlocking::ViaMenu(be) => {
                // The countdown comes before the prompt: ZFSBootMenu asks for the key when it
                // needs it, opening the menu or booting.
                self.wait_for_countdown(MENU_TIMEOUT)?;
                let asked = self.open_menu_asking_passphrase(root, passphrase)?;
                self.boot(be)?;
                if !asked {
                    self.type_passphrase(root, passphrase, MENU_TIMEOUT)?;
                }
            }
        }
        // Any encryption root's prompt, ZFSBootMenu's or the boot's (`zfs load-key`,
        // systemd-ask-password), is a second prompt.
        let (i, _) = self.m.console.wait_for_any(
            &[
                "login: ",
                "Enter passphrase for",
                "Encrypted ZFS password",
                "Incorrect key",
            ],
            MENU_TIMEOUT + LOGIN_TIMEOUT,
        )?;
        ensure!(
            i == 0,
            "after the right passphrase the boot asked again or refused it (see the transcript)"
        );
        self.m
            .login_at_prompt("root", crate::answers::ROOT_PASSWORD)
    }

    /// Escape: back to the previous screen (the main menu from a sub-list).
    pub fn back(&mut self) -> Result<Vec<String>> {
        self.press("Escape: back to the menu", "\x1b")?;
        self.wait_for_menu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_countdown() {
        let screen = "\n\n        [RETURN] boot now\n        [ESCAPE] boot menu\n    Booting rpool/ROOT/default in 4 seconds\n";
        assert_eq!(
            countdown_target(screen).as_deref(),
            Some("rpool/ROOT/default")
        );
        assert_eq!(
            countdown_target("Booting /boot/vmlinuz-6.12 for rpool/ROOT/default ..."),
            None
        );
        // As the serial console carries it (seen in a VM run).
        let console = "[13;21HBooting \x1b[0;36mrpool/ROOT/default\x1b[0m in \x1b[1;33m12\x1b[0m \
                       seconds\x1b[13;21HBooting \x1b[0;36mrpool/ROOT/default\x1b[0m in \x1b[1;33m11";
        assert_eq!(countdown_seconds(console), [12]);
        assert!(countdown_seconds("login: ").is_empty());
    }

    #[test]
    fn reads_lists_from_a_screen() {
        let screen = "> rpool/ROOT/default────┘\n│ rpool/ROOT/second│\n rpool/ROOT/default@factory  1.2G\n /boot/vmlinuz-6.12.117+deb13-amd64\n";
        assert_eq!(
            boot_environments(screen),
            ["rpool/ROOT/default", "rpool/ROOT/second"]
        );
        assert_eq!(snapshots(screen), ["rpool/ROOT/default@factory"]);
        assert_eq!(selected_item(screen).as_deref(), Some("rpool/ROOT/default"));
        assert_eq!(selected_item("BE > ^rpool$"), None);
        // fzf 0.60's pointer (seen in a VM run with ZFSBootMenu built on Debian 13).
        let newer = "└── Note: for diff viewer ──┘\n▌ rpool/ROOT/default@kept      \n\n\
                     Snapshot > ^rpool/ROOT/default@kept$  < 1/2 (0/2)\n";
        assert_eq!(
            selected_item(newer).as_deref(),
            Some("rpool/ROOT/default@kept")
        );
        assert_eq!(
            matches_for_query(newer, "^rpool/ROOT/default@kept$"),
            Some(1)
        );
        assert_eq!(kernels(screen), ["vmlinuz-6.12.117+deb13-amd64"]);
    }

    #[test]
    fn a_list_counted_before_its_rows_are_drawn_is_not_ready() {
        // Seen: fzf's count says 3 while only the first row is on the screen.
        let partial = "> rpool/ROOT/default──────\n\n      [RETURN] boot\nBE >   < 3/3\n";
        assert_eq!(fzf_matched(partial), Some(3));
        assert!(!all_rows_drawn(partial, boot_environments(partial).len()));
        let whole = "> rpool/ROOT/default\n  rpool/ROOT/default_CLONE\n  rpool/ROOT/default_NEW\nBE >   < 3/3\n";
        assert!(all_rows_drawn(whole, boot_environments(whole).len()));
        assert!(!all_rows_drawn("no prompt yet", 1));
    }

    #[test]
    fn keys_wait_for_the_line_editor_not_for_zfsbootmenus_prompt() {
        let prompt = "New boot environment name";
        // What the CI run that lost its Ctrl+U saw: the prompt echoed, readline not started.
        let echoed = "\nNew boot environment name (CTRL-C or leave blank to abort)\n\n";
        assert!(!line_editor_ready(echoed, prompt));
        let ready = "\nNew boot environment name (CTRL-C or leave blank to abort)\n> default_NEW\n";
        assert!(line_editor_ready(ready, prompt));
        // An empty proposal still draws readline's own prompt.
        let empty = "New kernel command line (root= arguments will be ignored)\n>\n";
        assert!(line_editor_ready(empty, "New kernel command line"));
        // A `>` above the prompt (fzf's pointer, left on the screen) is not the editor.
        assert!(!line_editor_ready(
            "> rpool/ROOT/default\nNew boot environment name\n",
            prompt
        ));
        // The prompt echoed again under an earlier one whose editor is done.
        let again = "New boot environment name\n> default_NEW\ndefault_NEW already exists\n\
                     New boot environment name\n";
        assert!(!line_editor_ready(again, prompt));
    }

    #[test]
    fn counts_the_matches_of_a_query() {
        let q = "^rpool/ROOT/default@before-change$";
        assert_eq!(
            matches_for_query(&format!("x\nSnapshot > {q}  < 1/2 (0/2)\n"), q),
            Some(1)
        );
        assert_eq!(
            matches_for_query("BE > ^rpool/ROOT/a$  0/3", "^rpool/ROOT/a$"),
            Some(0)
        );
        assert_eq!(
            matches_for_query("BE > ^rpool/ROOT/a", "^rpool/ROOT/a$"),
            None
        );
    }

    #[test]
    fn kernels_are_picked_in_zfsbootmenus_order() {
        // As the kernel list shows them: newest first.
        let listed = [
            "vmlinuz-6.12.999+deb13-amd64".to_string(),
            "vmlinuz-6.12.57+deb13-amd64".to_string(),
            "vmlinuz-6.12.9+deb13-amd64".to_string(),
        ];
        assert_eq!(
            KernelChoice::Oldest.pick(&listed).unwrap(),
            "vmlinuz-6.12.9+deb13-amd64"
        );
        assert_eq!(
            KernelChoice::Newest.pick(&listed).unwrap(),
            "vmlinuz-6.12.999+deb13-amd64"
        );
        assert_eq!(
            KernelChoice::from("vmlinuz-6.12.57+deb13-amd64".to_string())
                .pick(&listed)
                .unwrap(),
            "vmlinuz-6.12.57+deb13-amd64"
        );
        let e = KernelChoice::from("vmlinuz-5".to_string())
            .pick(&listed)
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("no kernel \"vmlinuz-5\""),
            "{e:#}"
        );
    }
}
