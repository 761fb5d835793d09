//! The harness's own root shell on a virtio-serial port of the guest
//! (/dev/virtio-ports/org.kldload.shell): commands run there, so their output and exit status
//! are exact and never mixed with kernel messages on the main console. The port is a plain
//! character device, not a tty: no getty competes for its input (systemd starts one on every
//! virtio console, /dev/hvc0, which ate characters of long commands), no echo, no line editing,
//! and virtio flow control loses nothing. Each command is sent base64-encoded and answered with one
//! framed line: `KT-BEGIN-<n>:<status>:<stdout base64>:<stderr base64>:KT-END-<n>`.

use crate::wait::{Look, TimedOut, wait_until};
use anyhow::{Context, Result, bail};
use base64::Engine;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Shell {
    stream: UnixStream,
    buffer: Vec<u8>,
    counter: u64,
    transcript: PathBuf,
    /// A command that never answered: the shell is still running it, so nothing more can run.
    stuck: Option<String>,
}

/// The guest's name of the port (QEMU's `virtserialport,name=`).
/// `s` quoted for bash as one word, always in single quotes (the generated scripts read alike
/// whatever the word).
pub fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub const PORT_NAME: &str = "org.kldload.shell";

/// The command typed on the main console to give the harness its shell on the port. The port
/// opens once, read-write; bash reading it is not interactive (it is no terminal).
pub const START_COMMAND: &str = "setsid -f sh -c 'exec bash --norc --noprofile 0<>/dev/virtio-ports/org.kldload.shell 1>&0 2>&0'";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The line that runs `cmd` and answers in a frame numbered `n`. The markers are split by
/// quotes, so the shell's echo of this line can never be taken for the answer.
pub fn framed(cmd: &str, n: u64) -> String {
    format!(
        "printf %s {} | base64 -d > /tmp/.kt.sh; bash /tmp/.kt.sh > /tmp/.kt.out 2> /tmp/.kt.err < /dev/null; kt_s=$?; \
         echo \"KT\"\"-BEGIN-{n}:$kt_s:$(base64 -w0 < /tmp/.kt.out):$(base64 -w0 < /tmp/.kt.err):KT\"\"-END-{n}\"\n",
        b64(cmd)
    )
}

/// Parses the answer to frame `n` out of `text`, if it is all there.
pub fn parse_frame(text: &str, n: u64) -> Option<Result<Output>> {
    let begin = format!("KT-BEGIN-{n}:");
    let end = format!(":KT-END-{n}");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let fields: Vec<&str> = text[start..stop].split(':').collect();
    let decode = |s: &str| -> Result<String> {
        Ok(
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(s.trim())?)
                .into_owned(),
        )
    };
    Some((|| {
        if fields.len() != 3 {
            bail!("malformed answer frame: {:?}", &text[start..stop]);
        }
        Ok(Output {
            status: fields[0].trim().parse()?,
            stdout: decode(fields[1])?,
            stderr: decode(fields[2])?,
        })
    })())
}

impl Shell {
    /// Connects to the VM's shell port's socket and waits until the shell answers.
    pub fn connect(socket: &Path, transcript: &Path, timeout: Duration) -> Result<Shell> {
        let stream = crate::console::connect(socket, Duration::from_secs(30))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut shell = Shell {
            stream,
            buffer: Vec::new(),
            counter: 0,
            transcript: transcript.to_owned(),
            stuck: None,
        };
        wait_until(
            &format!("the guest's root shell on /dev/virtio-ports/{PORT_NAME}"),
            timeout,
            Duration::from_millis(500),
            |left| match shell.run("true", left.min(Duration::from_secs(5))) {
                Ok(o) if o.status == 0 => Ok(Look::Ready(())),
                not_yet => {
                    // Not up yet: the next `true` goes after the unanswered one.
                    shell.stuck = None;
                    Ok(Look::NotYet(match not_yet {
                        Ok(o) => format!("status {}", o.status),
                        Err(e) => e.to_string(),
                    }))
                }
            },
            String::new,
        )?;
        Ok(shell)
    }

    fn log(&self, text: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.transcript)
        {
            let _ = writeln!(f, "\n[shell] {text}");
        }
    }

    /// Runs `cmd` with bash in the guest.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<Output> {
        if let Some(stuck) = &self.stuck {
            bail!(
                "the guest shell is still running an earlier command that timed out ({stuck}); not running: {cmd}"
            );
        }
        self.counter += 1;
        let n = self.counter;
        self.log(&format!("$ {cmd}"));
        let started = std::time::Instant::now();
        self.stream
            .write_all(framed(cmd, n).as_bytes())
            .context("writing to the guest shell")?;
        let mut chunk = [0u8; 65536];
        let (buffer, stream) = (&mut self.buffer, &mut self.stream);
        // Each look reads what has come (the socket's read timeout is 500 ms) and parses it.
        let answer = wait_until(
            &format!("the guest shell's answer to: {cmd}"),
            timeout,
            Duration::ZERO,
            |_| {
                let text = String::from_utf8_lossy(buffer).into_owned();
                if let Some(parsed) = parse_frame(&text, n) {
                    let end = text
                        .find(&format!(":KT-END-{n}"))
                        .map(|i| i + format!(":KT-END-{n}").len())
                        .unwrap_or(0);
                    buffer.drain(..end.min(buffer.len()));
                    return Ok(Look::Ready(parsed?));
                }
                match stream.read(&mut chunk) {
                    Ok(0) => bail!("the guest shell's line closed (VM gone?) while running: {cmd}"),
                    Ok(k) => buffer.extend_from_slice(&chunk[..k]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(Look::NotYet(String::new()))
            },
            String::new,
        );
        match answer {
            Ok(out) => {
                self.log(&format!(
                    "exit {} after {:.1} s; stdout: {}; stderr: {}",
                    out.status,
                    started.elapsed().as_secs_f64(),
                    out.stdout.trim_end(),
                    out.stderr.trim_end()
                ));
                Ok(out)
            }
            Err(e) => {
                self.log(&format!(
                    "no answer after {:.1} s: {e}",
                    started.elapsed().as_secs_f64()
                ));
                if e.is::<TimedOut>() {
                    self.stuck = Some(cmd.to_string());
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_command_opens_the_named_port() {
        assert!(START_COMMAND.contains(&format!("/dev/virtio-ports/{PORT_NAME} ")));
    }

    /// The frame round-trips through a real bash, output and status exact.
    #[test]
    fn frames_round_trip_through_bash() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = "cd /tmp; printf 'a b\\n\\tc:d'; echo oops >&2; exit 3";
        let line = framed(cmd, 7).replace("/tmp/.kt", &format!("{}/kt", dir.path().display()));
        let out = std::process::Command::new("bash")
            .args(["-c", &line])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed = parse_frame(&text, 7).unwrap().unwrap();
        assert_eq!(
            parsed,
            Output {
                status: 3,
                stdout: "a b\n\tc:d".into(),
                stderr: "oops\n".into()
            }
        );
        // The command line itself never parses as an answer.
        assert!(parse_frame(&framed(cmd, 7), 7).is_none());
        assert!(parse_frame(&text, 8).is_none());
    }
}
