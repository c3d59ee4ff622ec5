//! `clip serve` end to end: the JSON API on an index of rendered Fashion-MNIST scenes (answers, limits,
//! errors that leave the server serving, reloading after `clip index`), and the web page in a real
//! headless Chromium driven over WebDriver (chromedriver), when the machine has one.
//!
//! HTTP is spoken with a few lines over `TcpStream` (one request per connection): the tests need
//! nothing more, and no client crate has to be built for them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
#[path = "support/scenes.rs"]
mod scenes;

use clip::data::fashion::{CLASSES, COLOURS};
use scenes::render;
use serde_json::{json, Value};

fn clip_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clip"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A running `clip serve`, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &Path, extra: &[&str]) -> Server {
        let mut child = clip_bin()
            .args(["serve", "--db", s(db), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns (status, content type, body).
fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // a server may answer (413) and close before taking all of a huge body
    let _ = stream.write_all(body);
    // read the head, then exactly the body it announces (a server may keep the connection open)
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(!head.is_empty(), "no HTTP answer to {method} {path}");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let content_type = header("content-type").unwrap_or_default();
    let mut body = Vec::new();
    if let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).unwrap();
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    (status, content_type, body)
}

fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, bytes) = http(addr, "POST", path, Some(body.to_string().as_bytes()));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, _, bytes) = http(addr, "GET", path, None);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn image_b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

fn index(photos: &Path, db: &Path) {
    let out = clip_bin()
        .args(["index", s(photos), "--db", s(db)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_api_answers_refuses_bad_requests_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let scenes = render(&photos, 60, 21, 48);
    let db = dir.path().join("index.sqlite3");
    index(&photos, &db);
    let server = Server::start(&db, &[]);
    let addr = server.addr.as_str();

    let (code, status) = get_json(addr, "/api/status");
    assert_eq!(
        (code, status["images"].as_u64(), status["model"].as_str()),
        (200, Some(60), Some("bundled"))
    );

    // text: the best match for a colour word has that colour
    let (code, found) = post(
        addr,
        "/api/search",
        &json!({"query": "something red", "k": 5}),
    );
    assert_eq!(code, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let colour_of = |path: &str| {
        scenes
            .iter()
            .find(|(p, ..)| s(p) == path)
            .map(|&(_, _, k)| k)
    };
    assert_eq!(
        colour_of(results[0]["path"].as_str().unwrap()),
        Some(0),
        "{found}"
    );
    assert_eq!(results[0]["rank"], 1);

    // an uploaded copy of an indexed scene finds that scene first, at cosine ~1
    let (code, found) = post(
        addr,
        "/api/search",
        &json!({"image": image_b64(&scenes[7].0), "k": 3}),
    );
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["results"][0]["path"], s(&scenes[7].0));
    assert!(found["results"][0]["score"].as_f64().unwrap() > 0.9999);
    // "more like this" leaves the scene itself out
    let id = found["results"][0]["id"].as_i64().unwrap();
    let (code, like) = post(addr, "/api/search", &json!({"id": id, "k": 59}));
    assert_eq!(code, 200);
    assert_eq!(like["results"].as_array().unwrap().len(), 59);
    assert!(like["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != id));

    // thumbnails: a JPEG for an indexed id, 404 for any other
    let (code, kind, jpeg) = http(addr, "GET", &format!("/api/thumb/{id}"), None);
    assert_eq!(
        (code, kind.as_str(), &jpeg[..2]),
        (200, "image/jpeg", &[0xFF, 0xD8][..])
    );
    assert_eq!(get_json(addr, "/api/thumb/999999").0, 404);
    assert_eq!(get_json(addr, "/api/thumb/../../etc/passwd").0, 404);

    // zero-shot classification of an uploaded scene
    let (class, colour) = (scenes[3].1, scenes[3].2);
    let truth = format!("a {} {}", COLOURS[colour].0, CLASSES[class]);
    let wrong = format!(
        "a {} {}",
        COLOURS[(colour + 1) % 7].0,
        CLASSES[(class + 1) % 10]
    );
    let (code, ranked) = post(
        addr,
        "/api/classify",
        &json!({"image": image_b64(&scenes[3].0), "labels": [wrong, truth], "templates": ["a photo of {}"]}),
    );
    assert_eq!(code, 200, "{ranked}");
    assert_eq!(ranked["labels"][0]["label"], truth.as_str());

    // bad requests: JSON errors with 4xx, and the server goes on
    let bad: Vec<(Value, u16, &str)> = vec![
        (
            json!({"query": "a bag", "colour": "red"}),
            422,
            "unknown field",
        ),
        (json!({"query": "a bag +"}), 400, "ends with"),
        (json!({"query": ""}), 400, "empty"),
        (json!({}), 400, "exactly one"),
        (json!({"query": "a bag", "id": 1}), 400, "exactly one"),
        (json!({"query": "a bag", "k": 0}), 400, "k must be"),
        (json!({"query": "a bag", "k": 100000}), 400, "k must be"),
        (json!({"id": 123456}), 404, "no image with id"),
        (json!({"image": "bm90IGFuIGltYWdl"}), 400, "not an image"),
        (json!({"image": "%%%"}), 400, "base64"),
    ];
    for (body, want, needle) in bad {
        let (code, error) = post(addr, "/api/search", &body);
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            code == want && message.contains(needle),
            "{body}: {code} {error}"
        );
    }
    let (code, error) = post(
        addr,
        "/api/classify",
        &json!({"image": image_b64(&scenes[0].0), "labels": []}),
    );
    assert!(
        code == 400 && error["error"].as_str().unwrap().contains("labels"),
        "{error}"
    );
    let (code, error) = post(
        addr,
        "/api/classify",
        &json!({"image": image_b64(&scenes[0].0), "labels": ["a"], "templates": "/etc/passwd"}),
    );
    assert!(
        code == 400 && error["error"].as_str().unwrap().contains("unknown set"),
        "{error}"
    );
    let (code, _, body) = http(addr, "POST", "/api/search", Some(b"{not json"));
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let huge = vec![b' '; 17 << 20];
    let (code, _, _) = http(addr, "POST", "/api/search", Some(&huge));
    assert_eq!(code, 413);
    // a decompression bomb is refused from its header: a 20000 × 20000 PNG
    let mut png = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&20000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20000u32.to_be_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let (code, error) = post(addr, "/api/search", &json!({"image": b64}));
    assert!(code == 413 || code == 400, "{code} {error}");
    let (code, error) = get_json(addr, "/nothing/here");
    assert_eq!((code, error["error"].is_string()), (404, true));

    // still serving, and concurrent searches share the one model
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    post(
                        addr,
                        "/api/search",
                        &json!({"query": format!("a {}", CLASSES[i])}),
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![200; 8]);

    // a later `clip index` run is seen without a restart
    render(&photos.join("more"), 5, 77, 48);
    index(&photos, &db);
    assert_eq!(get_json(addr, "/api/status").1["images"], 65);
}

#[test]
fn a_full_queue_answers_429_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let scenes = render(&photos, 4, 2, 48);
    let db = dir.path().join("index.sqlite3");
    index(&photos, &db);
    let server = Server::start(&db, &["--queue", "1"]);
    let addr = server.addr.as_str();
    // each request builds a classifier of 4000 prompts: long enough for the others to find the
    // queue full
    let labels: Vec<String> = (0..200).map(|i| format!("label number {i}")).collect();
    let templates: Vec<String> = (0..20).map(|i| format!("{{}} variant {i}")).collect();
    let body = json!({"image": image_b64(&scenes[0].0), "labels": labels, "templates": templates});
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let mut body = body.clone();
                body["labels"][0] = json!(format!("first {i}")); // no cached classifier
                scope.spawn(move || post(addr, "/api/classify", &body))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (code, answer) = h.join().unwrap();
                if code == 429 {
                    assert!(
                        answer["error"].as_str().unwrap().contains("busy"),
                        "{answer}"
                    );
                }
                code
            })
            .collect()
    });
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
    assert!(codes.contains(&200) && codes.contains(&429), "{codes:?}");
    assert_eq!(get_json(addr, "/api/status").0, 200);
}

/// Opens a request whose body never fully arrives: headers promise `length` bytes, `sent` are sent.
fn stalled(addr: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![b' '; sent]).unwrap();
    stream
}

/// The status code of what the server answered on `stream` (blocking up to 20 s).
fn answer_code(mut stream: TcpStream) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn slow_and_vanishing_clients_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    render(&photos, 4, 3, 48);
    let db = dir.path().join("index.sqlite3");
    index(&photos, &db);
    let server = Server::start(&db, &["--max-requests", "3", "--body-timeout", "3"]);
    let addr = server.addr.as_str();
    // a client that sends half its body and hangs up, many times: nothing is left waiting
    for _ in 0..20 {
        drop(stalled(addr, 1000, 500));
    }
    // their slots come back as soon as the server has read the hang-ups (milliseconds)
    let hung_up = Instant::now();
    while get_json(addr, "/api/status").0 != 200 {
        assert!(
            hung_up.elapsed() < Duration::from_secs(2),
            "slots still held"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // two clients stall mid-body: they hold two of the three request slots, not the model
    let start = Instant::now();
    let slow: Vec<TcpStream> = (0..2).map(|_| stalled(addr, 1000, 10)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (code, answer) = post(addr, "/api/search", &json!({"query": "a red bag"}));
    assert_eq!(code, 200, "{answer}");
    // a third stalled one takes the last slot: the next request is turned away at once, in JSON
    let third = stalled(addr, 1000, 10);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the slow clients timed out already"
    );
    let mut status = TcpStream::connect(addr).unwrap();
    let request = format!("GET /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    status.write_all(request.as_bytes()).unwrap();
    let (code, text) = answer_code(status);
    assert_eq!(code, 429, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1") && text.contains(r#"{"error":"busy"#),
        "{text}"
    );
    // after the body timeout each stalled client gets 408 and its slot is free again
    for stream in slow.into_iter().chain([third]) {
        let (code, text) = answer_code(stream);
        assert_eq!(code, 408, "{text}");
        assert!(text.contains("longer than 3 s"), "{text}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let (code, answer) = post(addr, "/api/search", &json!({"query": "a red bag"}));
    assert_eq!(code, 200, "{answer}");
}

/// A W3C WebDriver command to chromedriver.
fn webdriver(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let (code, _, bytes) = http(
        &format!("127.0.0.1:{port}"),
        method,
        path,
        body.as_deref().map(str::as_bytes),
    );
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(code, 200, "{method} {path}: {value}");
    value["value"].clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_web_page_searches_in_a_real_browser() {
    let driver = Path::new("/usr/bin/chromedriver");
    if !driver.exists() {
        // CI installs chromium and chromium-driver and sets this, so there the test cannot be skipped
        assert!(
            std::env::var_os("CLIP_REQUIRE_BROWSER").is_none(),
            "CLIP_REQUIRE_BROWSER is set but /usr/bin/chromedriver is missing"
        );
        eprintln!("skipped: no /usr/bin/chromedriver (apt-get install chromium chromium-driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let scenes = render(&photos, 120, 8, 160);
    let db = dir.path().join("index.sqlite3");
    index(&photos, &db);
    let server = Server::start(&db, &[]);

    let port = free_port();
    let mut chromedriver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _driver = Kill(&mut chromedriver);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.path().join("chromium-profile");
    let session = webdriver(
        port,
        "POST",
        "/session",
        Some(
            json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.display())],
            }}}}),
        ),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    let at = |p: &str| format!("/session/{id}{p}");
    let find = |css: &str| -> Vec<String> {
        webdriver(
            port,
            "POST",
            &at("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
    };
    let text = |element: &str| -> String {
        webdriver(port, "GET", &at(&format!("/element/{element}/text")), None)
            .as_str()
            .unwrap()
            .to_string()
    };
    // read in one script: the grid may be replaced between finding an element and reading it
    let script = |js: &str| {
        webdriver(
            port,
            "POST",
            &at("/execute/sync"),
            Some(json!({"script": js, "args": []})),
        )
    };
    let names = || -> Vec<String> {
        serde_json::from_value(script(
            "return [...document.querySelectorAll('.result .name')].map(e => e.textContent)",
        ))
        .unwrap()
    };
    let wait_for = |css: &str, n: usize, not: &str| -> Vec<String> {
        let start = Instant::now();
        loop {
            let found = find(css);
            if found.len() >= n
                && (not.is_empty() || found.first().map(|e| text(e)) != Some(not.to_string()))
            {
                return found;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {css} on the page"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    webdriver(
        port,
        "POST",
        &at("/url"),
        Some(json!({"url": format!("http://{}/", server.addr)})),
    );
    // the status line shows the index
    let status = wait_for("#status", 1, "");
    let start = Instant::now();
    while !text(&status[0]).contains("120 images") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status: {}",
            text(&status[0])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // type a query, press Enter, read the grid
    let input = find("#q")[0].clone();
    webdriver(
        port,
        "POST",
        &at(&format!("/element/{input}/value")),
        Some(json!({"text": "a blue bag\u{E007}"})),
    );
    let cards = wait_for(".result", 20, "");
    assert_eq!(cards.len(), 40);
    let top: Vec<String> = names().into_iter().take(5).collect();
    let blue_bags = top.iter().filter(|n| n.ends_with("_blue_bag.png")).count();
    let expected = scenes
        .iter()
        .filter(|&&(_, c, k)| c == 8 && k == 2)
        .count()
        .min(5);
    assert!(
        blue_bags >= expected.min(3),
        "top 5: {top:?} ({expected} blue bags exist)"
    );
    let score: f32 = text(&find(".result .score")[0]).parse().unwrap();
    assert!(score > 0.3, "{score}");
    // thumbnails loaded (naturalWidth > 0)
    let start = Instant::now();
    while script("return [...document.querySelectorAll('.result img')].slice(0, 8).every(i => i.complete && i.naturalWidth > 0)") != json!(true) {
        assert!(start.elapsed() < Duration::from_secs(30), "thumbnails did not load");
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Ok(path) = std::env::var("CLIP_SCREENSHOT") {
        let png = webdriver(port, "GET", &at("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    // "more like this" on the first result: the grid changes, that scene is no longer in it
    let first = top[0].clone();
    let like = find(".result button")[0].clone();
    webdriver(
        port,
        "POST",
        &at(&format!("/element/{like}/click")),
        Some(json!({})),
    );
    let start = Instant::now();
    loop {
        let now = names();
        if !now.is_empty() && !now.contains(&first) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "more like this did not update the grid"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    webdriver(port, "DELETE", &at(""), None);
}
