//! A file served over HTTP from the host's loopback to a VM, which reaches it at 10.0.2.2 (QEMU's
//! user network without `restrict=on`): what a user's download is in a VM test, without the
//! network.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where the guest reaches the host's loopback on QEMU's user network.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

/// One file at `/<name>`, until dropped; every request's path is kept.
pub struct FileServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    name: String,
    /// The file served.
    pub file: PathBuf,
    /// The paths asked for, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// Serves `file` as `/<name>` on 127.0.0.1, on a port of its own.
    pub fn start(file: &Path, name: &str) -> Result<FileServer> {
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
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    requests.lock().unwrap().push(request.url().to_string());
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
