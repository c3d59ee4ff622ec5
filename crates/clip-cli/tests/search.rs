//! `clip index` and `clip search` end to end, with the bundled model on rendered Fashion-MNIST scenes:
//! queries find what they name, re-indexing reads only what changed, a killed run leaves a sound
//! index that the next run completes, and bad input is refused with a named error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/scenes.rs"]
mod scenes;

use clip::data::fashion::{CLASSES, COLOURS};
use scenes::render;
use serde_json::Value;

fn clip_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clip"))
}

fn run(args: &[&str]) -> Output {
    clip_bin().args(args).output().expect("run clip")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "clip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "clip {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn report(stdout: &str) -> Value {
    serde_json::from_str::<Value>(stdout).unwrap()["report"].clone()
}

fn count(report: &Value, key: &str) -> u64 {
    match &report[key] {
        Value::Array(a) => a.len() as u64,
        v => v.as_u64().unwrap_or_else(|| panic!("{key} in {report}")),
    }
}

fn search_paths(db: &Path, query: &[&str], n: usize) -> Vec<PathBuf> {
    let mut args = vec!["search", "--db", s(db), "--json", "-n"];
    let n = n.to_string();
    args.push(&n);
    args.extend(query);
    ok(&args)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            PathBuf::from(v["path"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn text_queries_find_the_scenes_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = render(&dir.path().join("scenes"), 400, 5, 48);
    let db = dir.path().join("index.sqlite3");
    let out = ok(&[
        "index",
        s(&dir.path().join("scenes")),
        "--db",
        s(&db),
        "--json",
    ]);
    assert_eq!(count(&report(&out), "embedded"), 400);

    let truth = |p: &Path| {
        scenes
            .iter()
            .find(|(q, ..)| q == p)
            .map(|&(_, c, k)| (c, k))
    };
    // precision@k, with k the number of relevant scenes up to 10 (R-precision for rare pairs)
    let precision = |query: &str, relevant: &dyn Fn(usize, usize) -> bool| -> f64 {
        let k = scenes
            .iter()
            .filter(|&&(_, c, o)| relevant(c, o))
            .count()
            .min(10);
        let hits = search_paths(&db, &[query], k);
        assert_eq!(hits.len(), k);
        let good = hits
            .iter()
            .filter(|p| truth(p).is_some_and(|(c, o)| relevant(c, o)))
            .count();
        good as f64 / k as f64
    };
    // a class and a colour: the scenes with both, then those with either word
    let mut pair_scores = Vec::new();
    for (class, colour) in [(8, 2), (7, 0), (3, 3), (5, 1), (4, 4), (0, 6)] {
        let query = format!("a {} {}", COLOURS[colour].0, CLASSES[class]);
        let both = precision(&query, &|c, k| c == class && k == colour);
        let either = precision(&query, &|c, k| c == class || k == colour);
        println!("{query:?}: precision {both:.2} (both words), {either:.2} (either)");
        pair_scores.push((query, both, either));
    }
    let mut class_scores = Vec::new();
    for (class, name) in CLASSES.iter().enumerate() {
        let query = format!("a photo of a {name}");
        let p = precision(&query, &|c, _| c == class);
        println!("{query:?}: precision@10 {p:.1}");
        class_scores.push(p);
    }
    let mut colour_scores = Vec::new();
    for (colour, (name, _)) in COLOURS.iter().enumerate() {
        let query = format!("something {name}");
        let p = precision(&query, &|_, k| k == colour);
        println!("{query:?}: precision@10 {p:.1}");
        colour_scores.push(p);
    }
    // chance: 1/70 for a pair, 1/10 for a class, 1/7 for a colour
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let both: Vec<f64> = pair_scores.iter().map(|p| p.1).collect();
    println!(
        "means: pairs {:.3}, classes {:.3}, colours {:.3}",
        mean(&both),
        mean(&class_scores),
        mean(&colour_scores)
    );
    // measured with the bundled model: pairs 0.867, classes (colour-free queries) 0.780, colours 1
    assert!(mean(&both) >= 0.75, "{pair_scores:?}");
    assert!(pair_scores.iter().all(|p| p.2 >= 0.9), "{pair_scores:?}");
    assert!(mean(&class_scores) >= 0.7, "{class_scores:?}");
    assert!(colour_scores.iter().all(|&p| p >= 0.9), "{colour_scores:?}");
}

#[test]
fn reindexing_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let scenes = render(&photos, 20, 11, 48);
    let db = dir.path().join("index.sqlite3");
    let index = || report(&ok(&["index", s(&photos), "--db", s(&db), "--json"]));
    let first = index();
    assert_eq!(
        (count(&first, "scanned"), count(&first, "embedded")),
        (20, 20)
    );

    // rename 3, copy 2 (one into a new sub-folder), delete 2, touch 1 (time only), rewrite 1 (new
    // content), add 4 new (one with a name that is not UTF-8)
    let path = |i: usize| scenes[i].0.clone();
    for i in 0..3 {
        std::fs::rename(path(i), photos.join(format!("renamed_{i}.png"))).unwrap();
    }
    std::fs::create_dir(photos.join("album")).unwrap();
    std::fs::copy(path(3), photos.join("album/copy_3.png")).unwrap();
    std::fs::copy(path(4), photos.join("copy_4.png")).unwrap();
    std::fs::remove_file(path(5)).unwrap();
    std::fs::remove_file(path(6)).unwrap();
    let touched = std::fs::File::options().write(true).open(path(7)).unwrap();
    touched
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(touched);
    std::fs::copy(path(19), path(8)).unwrap_or_else(|_| panic!("rewrite"));
    let extra = render(&dir.path().join("extra"), 24, 99, 48);
    #[cfg(unix)]
    let odd = {
        use std::os::unix::ffi::OsStrExt;
        photos.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"))
    };
    #[cfg(not(unix))]
    let odd = photos.join("café.png");
    std::fs::copy(&extra[20].0, &odd).unwrap();
    for (i, (file, ..)) in extra[21..].iter().enumerate() {
        std::fs::copy(file, photos.join(format!("new_{i}.png"))).unwrap();
    }

    let second = index();
    let counts: Vec<(&str, u64)> = [
        "scanned",
        "unchanged",
        "reused",
        "touched",
        "embedded",
        "deleted",
        "failed",
    ]
    .iter()
    .map(|k| (*k, count(&second, k)))
    .collect();
    // 20 - 3 renamed - 2 deleted + 3 new names + 2 copies + 4 new = 24 files; unchanged: 20 - 3
    // renamed - 2 deleted - touched - rewritten = 13; reused: 3 renames + 2 copies + the rewrite
    // (now scene 19's bytes, which the index holds); deleted: the 3 old names and 2 deleted
    assert_eq!(
        counts,
        [
            ("scanned", 24),
            ("unchanged", 13),
            ("reused", 6),
            ("touched", 1),
            ("embedded", 4),
            ("deleted", 5),
            ("failed", 0)
        ]
    );
    assert_eq!(second["counts"]["searchable"], 24);
    assert_eq!(second["counts"]["deleted"], 5);

    // a third run reads nothing
    let third = index();
    assert_eq!(
        (
            count(&third, "unchanged"),
            count(&third, "embedded"),
            count(&third, "reused")
        ),
        (24, 0, 0)
    );

    // results hold the new names and the non-UTF-8 one, never the deleted or old names
    let all = search_paths(&db, &["a bag"], 100);
    assert_eq!(all.len(), 24);
    for gone in [path(0), path(1), path(2), path(5), path(6)] {
        assert!(!all.contains(&gone), "{} is gone", gone.display());
    }
    assert!(all.contains(&photos.join("album/copy_3.png")));
    #[cfg(unix)]
    non_utf8_names_are_listed(&db);

    // "more like this": a copy's twin comes first and the file itself is left out
    let like = search_paths(&db, &["--like", s(&photos.join("copy_4.png"))], 3);
    assert_eq!(like[0], path(4));
    assert!(!like.contains(&photos.join("copy_4.png")));

    // --purge drops the deleted rows
    let purged = report(&ok(&[
        "index",
        s(&photos),
        "--db",
        s(&db),
        "--json",
        "--purge",
    ]));
    assert_eq!(
        (
            count(&purged, "purged"),
            purged["counts"]["deleted"].as_u64()
        ),
        (5, Some(0))
    );
}

/// The name `café.png` in Latin-1 (not UTF-8): `--json` gives its bytes, `--paths-only` prints them.
#[cfg(unix)]
fn non_utf8_names_are_listed(db: &Path) {
    let json = ok(&["search", "--db", s(db), "--json", "-n", "100", "a bag"]);
    let odd_line = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v.get("path_bytes").is_some())
        .expect("the non-UTF-8 name is listed");
    let bytes: Vec<u8> = serde_json::from_value(odd_line["path_bytes"].clone()).unwrap();
    assert!(bytes.ends_with(b"/caf\xe9.png"));
    let raw = run(&[
        "search",
        "--db",
        s(db),
        "--paths-only",
        "-n",
        "100",
        "a bag",
    ])
    .stdout;
    assert!(raw.windows(8).any(|w| w == b"caf\xe9.png"));
    assert_eq!(raw.iter().filter(|&&b| b == b'\n').count(), 24);
}

#[test]
fn a_killed_run_leaves_a_sound_index_that_the_next_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let n = 1500;
    render(&photos, n, 3, 48);
    let db = dir.path().join("index.sqlite3");
    // one image per batch and commit, one decoding thread: a slow run to kill in the middle
    let mut child = clip_bin()
        .args([
            "index",
            s(&photos),
            "--db",
            s(&db),
            "--batch-size",
            "1",
            "--workers",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stored = || -> u64 {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT count(*) FROM images", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while stored() < 20 && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = stored();
    println!("killed after {before} of {n} stored");
    assert!(
        before >= 20 && before < n as u64,
        "killed after {before} of {n}"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let next = report(&ok(&["index", s(&photos), "--db", s(&db), "--json"]));
    assert_eq!(
        (count(&next, "unchanged"), count(&next, "embedded")),
        (before, n as u64 - before)
    );
    assert_eq!(next["counts"]["searchable"], n as u64);
}

#[test]
fn bad_input_is_refused_with_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    render(&photos, 3, 1, 48);
    let db = dir.path().join("index.sqlite3");
    let missing = dir.path().join("nope");
    let err = fails(&["index", s(&missing), "--db", s(&db)]);
    assert!(
        err.contains("nope") && err.contains("not a folder"),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "no images here").unwrap();
    let err = fails(&["index", s(&empty), "--db", s(&db)]);
    assert!(
        err.contains("no image files under") && err.contains("empty"),
        "{err}"
    );

    // a file that is not an index: refused, untouched
    let foreign = dir.path().join("notes.db");
    std::fs::write(&foreign, "my notes, not SQLite").unwrap();
    let err = fails(&["index", s(&photos), "--db", s(&foreign)]);
    assert!(
        err.contains("notes.db") && err.contains("not a clip search index"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "my notes, not SQLite"
    );

    ok(&["index", s(&photos), "--db", s(&db)]);
    // another model: refused, naming both, until --reindex
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vit_tiny");
    let err = fails(&["index", s(&photos), "--db", s(&db), "--model", s(&other)]);
    assert!(
        err.contains("bundled") && err.contains("vit_tiny") && err.contains("--reindex"),
        "{err}"
    );
    let err = fails(&["search", "--db", s(&db), "--model", s(&other), "a bag"]);
    assert!(err.contains("vit_tiny"), "{err}");

    // queries
    for (args, needle) in [
        (vec!["search", "--db", s(&db)], "nothing to search for"),
        (vec!["search", "--db", s(&db), "a bag +"], "ends with"),
        (vec!["search", "--db", s(&db), "\"a bag"], "not closed"),
        (
            vec!["search", "--db", s(&dir.path().join("none.db")), "a bag"],
            "no index at",
        ),
        (
            vec!["search", "--db", s(&db), "--like", s(&missing)],
            "not in the index",
        ),
    ] {
        let err = fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let truncated =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/images/truncated.jpg");
    let err = fails(&["search", "--db", s(&db), "--image", s(&truncated)]);
    assert!(err.contains("truncated.jpg"), "{err}");

    // another writer holds the index: wait, then say so
    let holder = std::fs::File::open(&db).unwrap();
    holder.lock().unwrap();
    let err = fails(&["index", s(&photos), "--db", s(&db)]);
    assert!(err.contains("another process"), "{err}");
    drop(holder);
    ok(&["index", s(&photos), "--db", s(&db)]);
}

#[test]
fn the_approximate_index_follows_the_collection_and_finds_what_exact_search_finds() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let scenes = render(&photos, 300, 41, 48);
    let (ann_db, exact_db) = (
        dir.path().join("ann.sqlite3"),
        dir.path().join("exact.sqlite3"),
    );
    let first = report(&ok(&[
        "index",
        s(&photos),
        "--db",
        s(&ann_db),
        "--ann",
        "--json",
    ]));
    assert_eq!(
        (
            first["ann"]["size"].as_u64(),
            first["ann"]["added"].as_u64()
        ),
        (Some(300), Some(300))
    );
    assert!(dir.path().join("ann.sqlite3.usearch").is_file());
    let same_results = |label: &str| {
        for query in [
            "a blue bag",
            "something red",
            "a photo of a sneaker",
            "a yellow dress - 2:yellow",
        ] {
            let approximate = search_paths(&ann_db, &[query], 10);
            let exact = search_paths(&exact_db, &[query], 10);
            assert_eq!(approximate, exact, "{label}: {query}");
        }
    };
    ok(&["index", s(&photos), "--db", s(&exact_db)]);
    same_results("built");

    // delete 10, add 5: the next run removes and adds just those
    for (file, ..) in &scenes[..10] {
        std::fs::remove_file(file).unwrap();
    }
    render(&photos.join("new"), 5, 1234, 48);
    let next = report(&ok(&["index", s(&photos), "--db", s(&ann_db), "--json"]));
    assert_eq!(
        (
            next["ann"]["removed"].as_u64(),
            next["ann"]["added"].as_u64(),
            next["ann"]["size"].as_u64()
        ),
        (Some(10), Some(5), Some(295))
    );
    ok(&["index", s(&photos), "--db", s(&exact_db)]);
    same_results("updated");
    let all = search_paths(&ann_db, &["a bag"], 400);
    assert_eq!(all.len(), 295);
    assert!(all.iter().all(|p| p.exists()));
}
