//! The test server and client shared by the demo API's test files: the
//! server runs in-process via `callpool_demo_api::serve_with`, the client
//! is a plain `std::net::TcpStream` speaking HTTP/1.1, so no client crate
//! is needed and every byte of a request target goes out as written.

// Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use callpool_demo_api::Config;
use serde_json::Value;
use tokio::sync::oneshot;

/// The result type of every test.
pub type TestResult = Result<(), Box<dyn Error>>;

/// One answer: status, lower-cased header block, body.
pub type Answer = (u16, String, String);

/// A server on an ephemeral port, in its own thread and runtime; stopped
/// (and joined) on drop so tests do not leak threads.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A server with the default configuration.
    pub fn start() -> Result<Self, Box<dyn Error>> {
        Self::start_with(Config::default())
    }

    /// A server with this configuration.
    pub fn start_with(config: Config) -> Result<Self, Box<dyn Error>> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let _ = callpool_demo_api::serve_with(listener, None, &config, shutdown).await;
            });
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Sends one request on a fresh connection, with a User-Agent and an
    /// `X-Secret` header; returns status line, lower-cased header block
    /// and body.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> Result<Answer, Box<dyn Error>> {
        let headers = [("User-Agent", "demo-test"), ("X-Secret", "s3cret")];
        self.request_with(method, target, &headers, body)
    }

    /// [`Server::request`] with these headers only (plus `Host`,
    /// `Content-Length` and `Connection: close`).
    pub fn request_with(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, Box<dyn Error>> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
        let status = head.split(' ').nth(1).ok_or("no status")?.parse::<u16>()?;
        Ok((status, head.to_lowercase(), body.to_owned()))
    }

    /// A GET whose answer is JSON.
    pub fn get_json(&self, target: &str) -> Result<(u16, String, Value), Box<dyn Error>> {
        let (status, head, body) = self.request("GET", target, "")?;
        Ok((status, head, serde_json::from_str(&body)?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The value of header `name` (lower-case) in a lower-cased header block.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}
