//! The serial console, driven with rexpect: every byte QEMU's serial port sends is saved to the
//! transcript as it arrives and fed to a terminal emulator (vt100), so full-screen programs such
//! as ZFSBootMenu's menu can be read as the screen a person sees; every wait has a timeout, and a
//! failed wait says which phase, what was awaited, and the transcript's last 50 lines.

use crate::wait::{Look, wait_until};
use anyhow::{Result, anyhow, bail};
use rexpect::error::Error as ExpectError;
use rexpect::session::{StreamSession, spawn_stream};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The emulated terminal's size: what ZFSBootMenu draws for when nothing answers its size query.
pub const SCREEN_ROWS: NonZeroU16 = NonZeroU16::new(24).expect("not zero");
pub const SCREEN_COLS: NonZeroU16 = NonZeroU16::new(80).expect("not zero");

/// Copies what it reads to the transcript and the emulated screen.
struct Tee {
    inner: UnixStream,
    transcript: File,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transcript.write_all(&buf[..n])?;
        self.transcript.flush()?;
        if let Ok(mut screen) = self.screen.lock() {
            screen.process(&buf[..n]);
        }
        Ok(n)
    }
}

/// `text` without the terminal's escape sequences (colours, cursor moves, modes): what a person
/// reads of it.
pub fn plain_text(text: &str) -> String {
    let escapes = regex::Regex::new(r"\x1b\[[0-9;?=]*[A-Za-z]").expect("a valid regex");
    escapes.replace_all(text, "").into_owned()
}

/// How [`Console::mark`] starts its lines in the transcript.
const MARK: &str = "######## kldload harness: ";

/// Marks of a machine (re)starting: its own power-on, a saved state loaded, a reboot.
const MACHINE_STARTS: [&str; 3] = [
    " started (",
    "saved machine state loaded",
    "harness: reboot ",
];

/// Signs on a console that a boot went wrong, each in the words of what says it.
const TELLTALES: [&str; 10] = [
    // ZFSBootMenu's recovery shell, with its reason ("unable to load ZFS kernel modules").
    "emergency shell",
    "Kernel panic",
    // shim or the firmware refusing an image under Secure Boot.
    "Security Violation",
    // OVMF: a boot entry whose file is missing or will not load.
    "failed to load Boot",
    "No bootable option",
    // systemd's and the initramfs's own rescue.
    "You are in emergency mode",
    "Give root password for maintenance",
    "Module zfs not found",
    "cannot import",
    "Key was rejected by service",
];

/// The last line of `transcript` that says a boot went wrong (see [`TELLTALES`]), without
/// its escape sequences, looking only at the machine's last start (a test may have shown an
/// emergency shell or a refusal on purpose before): what a failed wait and the matrix quote,
/// so that a reader sees "emergency shell: unable to load ZFS kernel modules" and not only
/// what never came.
pub fn telltale(transcript: &str) -> Option<String> {
    let last_start = (transcript.rmatch_indices(MARK).map(|(i, _)| i))
        .find(|i| {
            let line = transcript[*i..].lines().next().unwrap_or_default();
            MACHINE_STARTS.iter().any(|s| line.contains(s))
        })
        .unwrap_or(0);
    let plain = plain_text(&transcript[last_start..]);
    let line = plain
        .lines()
        .rev()
        .map(|l| l.replace('\r', ""))
        .find(|l| TELLTALES.iter().any(|t| l.contains(t)))?;
    let line = line.trim();
    Some(match line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    })
}

/// The last `n` lines of a transcript, control characters made visible enough to read.
pub fn transcript_tail(path: &Path, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    last_lines(&String::from_utf8_lossy(&bytes), n)
}

/// The last `n` lines of a console's text, escapes shown as `^[` and carriage returns dropped.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.replace('\x1b', "^[").replace('\r', ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects to a unix socket QEMU serves, retrying while QEMU starts.
pub fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream> {
    wait_until(
        &format!("QEMU's socket {}", socket.display()),
        timeout,
        Duration::from_millis(100),
        |_| {
            Ok(match UnixStream::connect(socket) {
                Ok(s) => Look::Ready(s),
                Err(e) => Look::NotYet(e.to_string()),
            })
        },
        String::new,
    )
}

/// One expect's outcome as a wait's look: the match, not yet (the session's short timeout
/// passed), or an error that ends the wait (QEMU closed the serial port).
fn expect_look<T>(result: Result<T, ExpectError>, what: &str) -> Result<Look<T>> {
    match result {
        Ok(found) => Ok(Look::Ready(found)),
        Err(ExpectError::Timeout { .. }) => Ok(Look::NotYet(String::new())),
        Err(ExpectError::EOF { .. }) => Err(anyhow!(
            "the VM closed its serial port (QEMU exited) while waiting for {what}"
        )),
        Err(e) => Err(anyhow!("{e} while waiting for {what}")),
    }
}

pub struct Console {
    session: StreamSession<UnixStream>,
    screen: Arc<Mutex<vt100::Parser>>,
    pub transcript: PathBuf,
    /// The phase named in failures, e.g. "reboot to menu".
    pub phase: String,
}

impl Console {
    pub fn connect(socket: &Path, transcript: &Path) -> Result<Console> {
        let stream = connect(socket, Duration::from_secs(30))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(transcript)?;
        let screen = Arc::new(Mutex::new(vt100::Parser::new(SCREEN_ROWS, SCREEN_COLS, 0)));
        let reader = Tee {
            inner: stream.try_clone()?,
            transcript: file,
            screen: screen.clone(),
        };
        // A short session timeout: each wait loops on it up to its own deadline.
        let session = spawn_stream(reader, stream, Some(1000));
        Ok(Console {
            session,
            screen,
            transcript: transcript.to_owned(),
            phase: String::new(),
        })
    }

    /// What a failed wait adds: the phase, and the transcript's last 50 lines.
    fn context(&self) -> impl FnOnce() -> String + use<> {
        let (phase, transcript) = (self.phase.clone(), self.transcript.clone());
        move || {
            let text = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap_or_default())
                .into_owned();
            let said = telltale(&text)
                .map(|line| format!("the console said: {line}\n"))
                .unwrap_or_default();
            format!(
                "phase {phase:?}; {said}last 50 lines of {}:\n{}",
                transcript.display(),
                last_lines(&text, 50)
            )
        }
    }

    /// Waits for `text` to appear; returns what came before it.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String> {
        let (i, before) = self.wait_for_any(&[text], timeout)?;
        debug_assert_eq!(i, 0);
        Ok(before)
    }

    /// Waits for the first of `texts`; returns its index and what came before it.
    pub fn wait_for_any(&mut self, texts: &[&str], timeout: Duration) -> Result<(usize, String)> {
        let what = format!("{:?} on the console", texts.join(" | "));
        let (before, matched) = self.expect(&what, timeout, |session| {
            session.exp_any(
                texts
                    .iter()
                    .map(|t| rexpect::ReadUntil::String(t.to_string()))
                    .collect(),
            )
        })?;
        let i = texts.iter().position(|t| *t == matched).unwrap_or(0);
        Ok((i, before))
    }

    /// Waits for a regex; returns (before, matched).
    pub fn wait_for_regex(&mut self, regex: &str, timeout: Duration) -> Result<(String, String)> {
        let what = format!("/{regex}/ on the console");
        self.expect(&what, timeout, |session| session.exp_regex(regex))
    }

    /// Waits with one expect per look: each gives up after the session's own short timeout,
    /// and the wait goes on until `timeout`.
    fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut expect: impl FnMut(&mut StreamSession<UnixStream>) -> Result<T, ExpectError>,
    ) -> Result<T> {
        let context = self.context();
        let session = &mut self.session;
        wait_until(
            what,
            timeout,
            Duration::ZERO,
            |_| expect_look(expect(session), what),
            context,
        )
    }

    /// The emulated screen's text, row by row (what a person would see now).
    pub fn screen(&self) -> String {
        self.screen
            .lock()
            .map(|s| s.screen().contents())
            .unwrap_or_default()
    }

    /// Forgets the emulated screen (a reboot: what the firmware draws next starts afresh).
    pub fn clear_screen(&mut self) {
        if let Ok(mut screen) = self.screen.lock() {
            *screen = vt100::Parser::new(SCREEN_ROWS, SCREEN_COLS, 0);
        }
    }

    /// Waits until the screen satisfies `ready` (checked every 200 ms); returns the screen. A
    /// timeout fails with the screen as it was, also written into the transcript. (The screen is
    /// fed by rexpect's reader thread, so it is current whether or not an `expect` runs.)
    pub fn wait_for_screen(
        &mut self,
        what: &str,
        ready: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        wait_until(
            what,
            timeout,
            Duration::from_millis(200),
            |_| {
                let screen = self.screen();
                Ok(if ready(&screen) {
                    Look::Ready(screen)
                } else {
                    Look::NotYet(String::new())
                })
            },
            || {
                let screen = self.screen();
                self.mark(&format!("screen while waiting for {what}:\n{screen}"));
                format!("phase {:?}; the screen:\n{screen}", self.phase)
            },
        )
    }

    /// Forgets the output not yet waited for: a wait that follows sees only what comes next
    /// (a screen-based wait leaves the output it read in the stream). Returns how many
    /// characters were dropped.
    pub fn discard_pending(&mut self) -> usize {
        let mut dropped = 0;
        while self.session.try_read().is_some() {
            dropped += 1;
        }
        dropped
    }

    /// Sends characters as typed (no newline).
    pub fn send(&mut self, text: &str) -> Result<()> {
        self.session.send(text)?;
        self.session.flush()?;
        Ok(())
    }

    pub fn send_line(&mut self, text: &str) -> Result<()> {
        self.send(&format!("{text}\r"))
    }

    /// Types `text` and Enter, after `after` (a regex) appears when given.
    pub fn type_line_after(
        &mut self,
        after: Option<&str>,
        text: &str,
        timeout: Duration,
    ) -> Result<()> {
        if let Some(after) = after {
            self.wait_for_regex(after, timeout)?;
            std::thread::sleep(Duration::from_millis(500));
        }
        self.mark(&format!("typed {text:?}"));
        self.send_line(text)
    }

    /// Waits for `prompt` (a regex) and types `secret` and Enter there; the transcript records
    /// that it was typed, never its text. Returns what matched.
    pub fn type_secret_at(
        &mut self,
        prompt: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<String> {
        let (_, found) = self.wait_for_regex(prompt, timeout)?;
        std::thread::sleep(Duration::from_millis(500));
        self.mark(&format!(
            "typed the passphrase at {found:?} (its text not recorded)"
        ));
        self.send_line(secret)?;
        Ok(found)
    }

    /// Watches the console from now on for `how_long`: `regex` must not appear (what came
    /// before, such as a shutdown's messages, is not looked at).
    pub fn absent_for(&mut self, regex: &str, how_long: Duration) -> Result<()> {
        self.discard_pending();
        match self.wait_for_regex(regex, how_long) {
            Ok((_, found)) => bail!("the console showed {found:?}"),
            Err(e) if e.downcast_ref::<crate::wait::TimedOut>().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes a marker into the transcript, so a reader sees where each phase starts.
    pub fn mark(&self, text: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.transcript) {
            let _ = writeln!(f, "\n\n{MARK}{text} ########");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of debian-14's first boot (2026-11-27), ZFSBootMenu built without zfs.ko.
    #[test]
    fn the_last_line_that_says_what_went_wrong_is_quoted_without_escapes() {
        let transcript = "BdsDxe: starting Boot0005 \"ZFSBootMenu\" from HD(1,GPT,...)\r\n\
            modinfo: ERROR: Module spl not found.\r\n\
            \x1b[H\x1b[J\x1b[3J\x1b[?25h\x1b[?0c\x1b[0;32memergency shell\x1b[0m: unable to load \
            ZFS kernel modules\r\n\r\ntype '\x1b[0;31mhelp\x1b[0m' for online documentation\r\n\
            \x1b[?2004h\x1b[0;33mzfsbootmenu\x1b[0m / > ";
        assert_eq!(
            telltale(transcript).as_deref(),
            Some("emergency shell: unable to load ZFS kernel modules")
        );
        assert_eq!(telltale("Welcome to Debian\r\nlogin: "), None);
        // An emergency shell shown on purpose before the machine started again is not quoted.
        let later = format!(
            "{transcript}\r\n\n######## kldload harness: installed started (Tcg) ########\n\
             Welcome to Debian\r\nlogin: "
        );
        assert_eq!(telltale(&later), None);
        let long = format!("Kernel panic - not syncing: {}\n", "x".repeat(300));
        let quoted = telltale(&long).unwrap();
        assert!(quoted.starts_with("Kernel panic - not syncing: xxx") && quoted.ends_with("..."));
        assert_eq!(quoted.chars().count(), 163);
    }
}
