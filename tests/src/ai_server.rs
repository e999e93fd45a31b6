//! A real HTTP/1.1 server on 127.0.0.1 speaking the OpenAI chat-completions
//! shape, for the `http` capability and `ai-enrich` tests.
//!
//! The first path segment picks the behaviour, so one server serves every
//! mode: `http://127.0.0.1:PORT/<mode>/v1` is a `base_url`, and the plugin
//! posts to `/<mode>/v1/chat/completions`.
//! - `ok`: a canned, valid answer;
//! - `echo-auth`: a valid answer whose summary quotes the `Authorization`
//!   header the server received (a leaking service);
//! - `latency`: answers like `ok` after [`LATENCY`] (a fast real service);
//! - `slow`: answers after [`SLOW`];
//! - `error`: HTTP 500;
//! - `malformed`: HTTP 200 whose message is not the JSON asked for;
//! - `fenced`, `prose`, `synonyms`: the valid answer the way real models
//!   give it: in a Markdown code fence tagged `json`; inside prose; with
//!   near-synonym, mixed-case keys, technique names after the ids and
//!   `Critical` for the priority (which means `immediate`);
//! - `huge`: a 2 MiB body;
//! - `redirect`: 307 to the URL given by [`AiServer::redirect_to`];
//! - `ratelimited`: 429 with `Retry-After: 30` and an OpenAI-style error;
//! - `overloaded`: 503 without `Retry-After`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `slow` waits before answering.
pub const SLOW: Duration = Duration::from_secs(3);
/// How long the `latency` mode takes: a fast real service.
pub const LATENCY: Duration = Duration::from_millis(3);

/// The canned summary of `ok`.
pub const SUMMARY: &str = "Encoded PowerShell started from an Office document.";

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running server; it stops accepting when dropped.
pub struct AiServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Every request received, in order.
    pub received: Arc<Mutex<Vec<Received>>>,
    redirect: Arc<Mutex<String>>,
    listener: Option<TcpListener>,
}

impl AiServer {
    /// Start on an ephemeral loopback port.
    pub fn start() -> AiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let redirect = Arc::new(Mutex::new(String::new()));
        let accept = listener.try_clone().expect("clone listener");
        let (rec, red) = (received.clone(), redirect.clone());
        std::thread::spawn(move || {
            for stream in accept.incoming() {
                let Ok(stream) = stream else { return };
                let (rec, red) = (rec.clone(), red.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &rec, &red);
                });
            }
        });
        AiServer {
            addr,
            received,
            redirect,
            listener: Some(listener),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `base_url` for `mode`.
    pub fn base_url(&self, mode: &str) -> String {
        format!("{}/{mode}/v1", self.origin())
    }

    /// Where `redirect` sends the client.
    pub fn redirect_to(&self, url: &str) {
        *self.redirect.lock().expect("lock") = url.to_owned();
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Stop accepting connections (for replay "with the server stopped").
    pub fn stop(&mut self) {
        if let Some(listener) = self.listener.take() {
            // Wake the accept loop with one last connection it then drops.
            let _ = listener.set_nonblocking(true);
            let addr = self.addr.clone();
            drop(listener);
            let _ = TcpStream::connect(addr);
        }
    }
}

impl Drop for AiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    redirect: &Mutex<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let request = Received {
        path: path.clone(),
        headers,
        body,
    };
    let auth = request.header("authorization").unwrap_or("").to_owned();
    received.lock().expect("lock").push(request);

    let mode = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let object = |summary: &str| {
        serde_json::json!({
            "summary": summary,
            "techniques": ["T1059.001", "T1027"],
            "priority": "high",
        })
    };
    let completion = |content: String| {
        serde_json::json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
        })
        .to_string()
        .into_bytes()
    };
    let answer = |summary: &str| completion(object(summary).to_string());
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).expect("json");
    let (status, extra, body) = match mode {
        "ok" => ("200 OK", String::new(), answer(SUMMARY)),
        "echo-auth" => (
            "200 OK",
            String::new(),
            answer(&format!("the request said: {auth}")),
        ),
        "latency" => {
            std::thread::sleep(LATENCY);
            ("200 OK", String::new(), answer(SUMMARY))
        }
        "slow" => {
            std::thread::sleep(SLOW);
            ("200 OK", String::new(), answer(SUMMARY))
        }
        "error" => ("500 Internal Server Error", String::new(), b"{}".to_vec()),
        "malformed" => {
            let body = serde_json::json!({
                "choices": [{ "message": { "role": "assistant", "content": "Sure! Here is my analysis: it looks bad." } }],
            });
            ("200 OK", String::new(), body.to_string().into_bytes())
        }
        "fenced" => (
            "200 OK",
            String::new(),
            completion(format!("```json\n{}\n```", pretty(&object(SUMMARY)))),
        ),
        "prose" => (
            "200 OK",
            String::new(),
            completion(format!(
                "Here is my assessment of the finding {{rule vigil.x}}:\n\n{}\n\n\
                 In short: treat the host as compromised until proven otherwise.",
                pretty(&object(SUMMARY))
            )),
        ),
        "synonyms" => {
            let content = serde_json::json!({
                "Analysis": SUMMARY,
                "MITRE_Techniques": ["T1059.001 - PowerShell", "t1027 (Obfuscated Files or Information)"],
                "Severity": "Critical",
            });
            ("200 OK", String::new(), completion(content.to_string()))
        }
        "huge" => ("200 OK", String::new(), vec![b'x'; 2 << 20]),
        "ratelimited" => (
            "429 Too Many Requests",
            "retry-after: 30\r\n".to_owned(),
            br#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#.to_vec(),
        ),
        "overloaded" => (
            "503 Service Unavailable",
            String::new(),
            br#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#.to_vec(),
        ),
        "redirect" => {
            let to = redirect.lock().expect("lock").clone();
            (
                "307 Temporary Redirect",
                format!("location: {to}\r\n"),
                Vec::new(),
            )
        }
        _ => ("404 Not Found", String::new(), Vec::new()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
}
