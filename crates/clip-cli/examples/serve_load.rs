//! A load test of `clip serve` on loopback: concurrent text searches, image uploads and zero-shot
//! classifications against an index of rendered Fashion-MNIST scenes, for a bounded time, while other
//! clients misbehave (bodies over the limit, uploads cut off half-way, bodies that stall). A client
//! that is answered 429 waits the second its Retry-After asks. Prints the
//! throughput, p50/p99 latency and status codes per kind of request, and the server's memory.
//!
//! ```sh
//! cargo build --release -p clip-cli --bins --examples
//! target/release/examples/serve_load [SECONDS] [CLIENTS]      # default 30 s, 16 clients
//! ```
//! It runs the `clip` binary beside its own directory (`target/release/clip`), or `$CLIP_BIN`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

#[path = "../tests/support/scenes.rs"]
mod scenes;

fn clip_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CLIP_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("own path");
    // target/PROFILE/examples/serve_load -> target/PROFILE/clip
    exe.parent()
        .and_then(Path::parent)
        .map(|p| p.join("clip"))
        .expect("a target directory")
}

/// One request on its own connection: (status, seconds). Status 0: the connection failed.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, f64) {
    let start = Instant::now();
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, 0.0);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, start.elapsed().as_secs_f64());
    }
    let _ = stream.write_all(body); // a 413 may come before the whole body is taken
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, start.elapsed().as_secs_f64())
}

/// Resident memory of a process in MB (Linux).
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    codes: BTreeMap<u16, usize>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let clip = clip_binary();
    assert!(
        clip.is_file(),
        "no clip binary at {} (set CLIP_BIN)",
        clip.display()
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let photos = dir.path().join("photos");
    let scenes = scenes::render(&photos, 1000, 7, 64);
    let db = dir.path().join("index.sqlite3");
    let indexed = Command::new(&clip)
        .args(["index"])
        .arg(&photos)
        .arg("--db")
        .arg(&db)
        .stderr(Stdio::null())
        .status()
        .expect("clip index");
    assert!(indexed.success());
    let mut server = Command::new(&clip)
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("clip serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the serving line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("an address")
        .to_string();
    let pid = server.id();
    let rss_start = rss_mb(pid).unwrap_or(f64::NAN);
    println!(
        "clip serve: {} images, {clients} clients for {seconds} s, server at {addr} (RSS {rss_start:.0} MB)",
        scenes.len()
    );

    let uploads: Vec<Vec<u8>> = scenes
        .iter()
        .take(50)
        .map(|(path, _, _)| std::fs::read(path).expect("a scene"))
        .map(|bytes| {
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into_bytes()
        })
        .collect();
    let words = ["red", "blue", "green", "black", "white", "yellow"];
    let things = [
        "bag", "sneaker", "dress", "coat", "shirt", "sandal", "trouser",
    ];
    let labels: Vec<String> = things.iter().map(|t| format!("a {t}")).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Arc<Mutex<BTreeMap<&'static str, Tally>>> = Arc::default();
    let peak = Arc::new(Mutex::new(rss_start));
    let started = Instant::now();
    std::thread::scope(|scope| {
        // the server's memory, every 100 ms
        {
            let (stop, peak) = (stop.clone(), peak.clone());
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let (Some(now), Ok(mut peak)) = (rss_mb(pid), peak.lock()) {
                        *peak = peak.max(now);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        // well-behaved clients: 60 % text searches, 20 % image searches, 20 % classifications
        for client in 0..clients {
            let (stop, tallies, addr) = (stop.clone(), tallies.clone(), addr.clone());
            let (uploads, labels) = (&uploads, &labels);
            scope.spawn(move || {
                let mut i = client * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (kind, path, body) = match i % 10 {
                        0 | 1 => (
                            "search by image",
                            "/api/search",
                            format!(
                                r#"{{"image":"{}","k":10}}"#,
                                String::from_utf8_lossy(&uploads[i % uploads.len()])
                            ),
                        ),
                        2 | 3 => (
                            "classify",
                            "/api/classify",
                            json!({"image": String::from_utf8_lossy(&uploads[i % uploads.len()]),
                                   "labels": labels, "templates": "simple"})
                            .to_string(),
                        ),
                        _ => (
                            "search by text",
                            "/api/search",
                            json!({"query": format!("a {} {}", words[i % words.len()],
                                                    things[(i / 6) % things.len()]), "k": 20})
                            .to_string(),
                        ),
                    };
                    let (code, took) = request(&addr, "POST", path, body.as_bytes());
                    if let Ok(mut t) = tallies.lock() {
                        let tally = t.entry(kind).or_default();
                        *tally.codes.entry(code).or_default() += 1;
                        if code == 200 {
                            tally.latencies.push(took);
                        }
                    }
                    if code == 429 {
                        // as the answer's Retry-After asks
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            });
        }
        // misbehaving clients: a body over the limit (17 MB), an upload cut off half-way, a body
        // that stalls until the server's timeout
        {
            let (stop, tallies, addr) = (stop.clone(), tallies.clone(), addr.clone());
            scope.spawn(move || {
                let huge = vec![b' '; 17 << 20];
                while !stop.load(Ordering::Relaxed) {
                    let (code, _) = request(&addr, "POST", "/api/search", &huge);
                    if let Ok(mut t) = tallies.lock() {
                        *t.entry("over the body limit").or_default().codes.entry(code).or_default() += 1;
                    }
                    if let Ok(mut stream) = TcpStream::connect(&addr) {
                        let head = format!(
                            "POST /api/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                             Content-Length: 400000\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&vec![b' '; 200_000]);
                        // dropped: the upload ends half-way
                    }
                    if let Ok(mut t) = tallies.lock() {
                        *t.entry("cut off mid-upload").or_default().codes.entry(0).or_default() += 1;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        for _ in 0..2 {
            let (stop, tallies, addr) = (stop.clone(), tallies.clone(), addr.clone());
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(&addr) else {
                        continue;
                    };
                    let head = format!(
                        "POST /api/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                         Content-Length: 1000\r\n\r\n{{\"query\":"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut answer = String::new();
                    let _ = stream.read_to_string(&mut answer);
                    let code = answer
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    if let Ok(mut t) = tallies.lock() {
                        *t.entry("stalled body").or_default().codes.entry(code).or_default() += 1;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_mb(pid).unwrap_or(f64::NAN);
    let _ = server.kill();
    let _ = server.wait();

    println!("| request | answered | per second | p50 ms | p99 ms | status codes |");
    println!("|---|---|---|---|---|---|");
    let tallies = tallies.lock().expect("tallies");
    for (kind, tally) in tallies.iter() {
        let mut sorted = tally.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let answered: usize = tally.codes.values().sum();
        let codes: Vec<String> = tally
            .codes
            .iter()
            .map(|(code, n)| match code {
                0 => format!("{n} × no answer (client hung up)"),
                c => format!("{n} × {c}"),
            })
            .collect();
        println!(
            "| {kind} | {answered} | {:.1} | {:.1} | {:.1} | {} |",
            answered as f64 / elapsed,
            percentile(&sorted, 0.5) * 1e3,
            percentile(&sorted, 0.99) * 1e3,
            codes.join(", ")
        );
    }
    println!(
        "server memory: {rss_start:.0} MB at the start, peak {:.0} MB, {rss_end:.0} MB at the end ({elapsed:.1} s)",
        peak.lock().map_or(f64::NAN, |p| *p)
    );
}
