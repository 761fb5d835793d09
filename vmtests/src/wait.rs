//! The one way the harness waits, after cloud-hypervisor's test_infra `wait_until`: what is
//! awaited, a deadline, how often to look again. Every wait (a socket QEMU serves, QEMU's exit,
//! text or a screen on the console, the guest's shell, a command that must come to succeed, a
//! unit) goes through [`wait_until`], so each fails the same way: what was awaited, for how
//! long, what the last look saw, and what its caller adds (the transcript's tail or the screen).

use anyhow::{Result, anyhow};
use std::time::{Duration, Instant};

/// What one look found.
pub enum Look<T> {
    /// The wait is over.
    Ready(T),
    /// Not yet; what was seen, for the failure message should the time run out.
    NotYet(String),
}

/// A wait's time limit.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            start: Instant::now(),
            timeout,
        }
    }

    /// The time left (zero once passed).
    pub fn left(&self) -> Duration {
        self.timeout.saturating_sub(self.start.elapsed())
    }

    pub fn passed(&self) -> bool {
        self.start.elapsed() >= self.timeout
    }
}

/// Looks with `look` every `interval` until it is ready or `timeout` has passed. Each look is
/// given the time left, so a look that itself waits (a command in the guest) never outlives the
/// deadline. An error from a look ends the wait at once (a VM gone, a unit failed); the time
/// running out is a [`TimedOut`] error naming `what`, the timeout and the last look's finding.
/// Either error ends with `context()` (called only then).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut look: impl FnMut(Duration) -> Result<Look<T>>,
    context: impl FnOnce() -> String,
) -> Result<T> {
    let deadline = Deadline::after(timeout);
    let with_context = |message: String, context: String| {
        if context.is_empty() {
            message
        } else {
            format!("{message}\n{context}")
        }
    };
    loop {
        let seen = match look(deadline.left()) {
            Ok(Look::Ready(value)) => return Ok(value),
            Ok(Look::NotYet(seen)) => seen,
            Err(e) => return Err(anyhow!(with_context(format!("{e:#}"), context()))),
        };
        if deadline.passed() {
            let mut message = format!("timed out after {timeout:?} waiting for {what}");
            if !seen.is_empty() {
                message.push_str(&format!("; last seen: {seen}"));
            }
            return Err(anyhow!(TimedOut(with_context(message, context()))));
        }
        std::thread::sleep(interval.min(deadline.left()));
    }
}

/// The error of a wait whose time ran out (to tell it from a look's error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TimedOut(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_on_the_third_look() {
        let mut n = 0;
        let v = wait_until(
            "three looks",
            Duration::from_secs(5),
            Duration::from_millis(1),
            |_| {
                n += 1;
                Ok(if n == 3 {
                    Look::Ready(n)
                } else {
                    Look::NotYet(format!("look {n}"))
                })
            },
            String::new,
        )
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn a_timeout_names_what_was_awaited_and_the_last_look() {
        let e = wait_until::<()>(
            "the moon",
            Duration::from_millis(30),
            Duration::from_millis(5),
            |_| Ok(Look::NotYet("clouds".into())),
            || "the sky's last lines".into(),
        )
        .unwrap_err();
        assert!(e.is::<TimedOut>());
        let e = e.to_string();
        assert!(e.contains("waiting for the moon"), "{e}");
        assert!(e.contains("last seen: clouds"), "{e}");
        assert!(e.ends_with("the sky's last lines"), "{e}");
    }

    #[test]
    fn each_look_gets_what_is_left_and_an_error_ends_the_wait() {
        let mut lefts = Vec::new();
        let _ = wait_until::<()>(
            "nothing",
            Duration::from_millis(50),
            Duration::from_millis(10),
            |left| {
                lefts.push(left);
                Ok(Look::NotYet(String::new()))
            },
            String::new,
        );
        assert!(lefts.windows(2).all(|w| w[1] <= w[0]), "{lefts:?}");
        assert!(lefts[0] <= Duration::from_millis(50));
        let mut looks = 0;
        let e = wait_until::<()>(
            "a dead VM",
            Duration::from_secs(5),
            Duration::from_millis(1),
            |_| {
                looks += 1;
                Err(anyhow!("QEMU exited"))
            },
            String::new,
        )
        .unwrap_err();
        assert_eq!((looks, e.to_string().as_str()), (1, "QEMU exited"));
        assert!(!e.is::<TimedOut>());
    }
}
