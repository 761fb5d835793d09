//! A file served over HTTP from the host's loopback to a VM, which reaches it at 10.0.2.2 (QEMU's
//! user network without `restrict=on`): what a user's download is in a VM test, without the
//! network.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where the guest reaches the host's loopback on QEMU's user network.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

/// One request: its path, and how long the VM's serial transcript was when it came (what the
/// console had shown by then).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub path: String,
    pub transcript_len: u64,
}

/// One file at `/<name>`, until dropped; every request is kept.
pub struct FileServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    name: String,
    /// The file served.
    pub file: PathBuf,
    /// The requests, in order.
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FileServer {
    /// Serves `file` as `/<name>` on 127.0.0.1, on a port of its own; each request notes the
    /// length of `transcript` then.
    pub fn start(file: &Path, name: &str, transcript: &Path) -> Result<FileServer> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("an HTTP server on 127.0.0.1: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .context("the HTTP server's address")?
            .port();
        let server = Arc::new(server);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, requests) = (server.clone(), requests.clone());
            let (file, wanted) = (file.to_owned(), format!("/{name}"));
            let transcript = transcript.to_owned();
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let transcript_len = std::fs::metadata(&transcript).map_or(0, |m| m.len());
                    requests.lock().unwrap().push(Request {
                        path: request.url().to_string(),
                        transcript_len,
                    });
                    let _ = match std::fs::File::open(&file) {
                        Ok(f) if request.url() == wanted => {
                            request.respond(tiny_http::Response::from_file(f))
                        }
                        _ => request.respond(tiny_http::Response::empty(404)),
                    };
                }
            })
        };
        Ok(FileServer {
            server,
            thread: Some(thread),
            port,
            name: name.into(),
            file: file.to_owned(),
            requests,
        })
    }

    /// The file's URL as the guest sees it.
    pub fn guest_url(&self) -> String {
        format!("http://{HOST_FROM_GUEST}:{}/{}", self.port, self.name)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// That the one request for `/<name>` came before the console showed the install's first step
/// that writes to a disk (its header, `==> step N/M partition`), which the whole `transcript`
/// must show (the control: the same search sees it there). Returns what it found.
pub fn fetched_before_the_first_write(
    requests: &[Request],
    name: &str,
    transcript: &[u8],
) -> Result<String> {
    let partition = kldload::plan::StepId::Partition.name();
    let header = regex::bytes::Regex::new(&format!(r"==> step \d+/\d+ {partition}\b"))?;
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    anyhow::ensure!(paths == [format!("/{name}")], "asked for {paths:?}");
    let at = usize::try_from(requests[0].transcript_len)?.min(transcript.len());
    let written = header
        .find(transcript)
        .context("the console never showed the partition step: the search sees nothing")?;
    anyhow::ensure!(
        header.find(&transcript[..at]).is_none(),
        "the download came after the console showed the partition step (at byte {} of the \
         transcript; the request at byte {at})",
        written.start()
    );
    Ok(format!(
        "GET /{name} at byte {at} of the transcript, the partition step at byte {}",
        written.start()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_must_come_before_the_partition_step() {
        let transcript = b"==> step 1/1 fetch_boot_menu\n...\n==> step 1/7 partition: GPT\n";
        let request = |at: u64| {
            vec![Request {
                path: "/z.EFI".into(),
                transcript_len: at,
            }]
        };
        fetched_before_the_first_write(&request(20), "z.EFI", transcript).unwrap();
        let late = fetched_before_the_first_write(&request(60), "z.EFI", transcript);
        assert!(late.unwrap_err().to_string().contains("came after"));
        // The control: a transcript without the step is an error, not a pass.
        let none = fetched_before_the_first_write(&request(5), "z.EFI", b"nothing");
        assert!(none.unwrap_err().to_string().contains("never showed"));
        let twice = [request(1), request(2)].concat();
        assert!(fetched_before_the_first_write(&twice, "z.EFI", transcript).is_err());
    }
}
