//! Crash safety proved by killing: `clip train`, `clip index` and `clip embed-dataset` are killed
//! (SIGKILL, no chance to clean up) at 32 random moments each, half of them picked while a checkpoint,
//! the database or a shard is being written. After every kill what was committed is whole, and
//! rerunning after the last one finishes with exactly what an uninterrupted run gives. And a disk that
//! fills up during a checkpoint leaves the previous one whole, with an error that says so.
//!
//! The moments come from a seed printed by each test; `CLIP_KILL_SEED=N` replays one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use serde_json::Value;

#[path = "support/scenes.rs"]
mod scenes;
#[path = "support/train_config.rs"]
mod train_config;

const KILLS: usize = 32;

/// splitmix64: the kill moments, reproducible from the printed seed.
struct Moments(u64);

impl Moments {
    fn new(test: &str) -> Self {
        let seed = std::env::var("CLIP_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64)
            });
        println!("{test}: CLIP_KILL_SEED={seed}");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How one start ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// Killed; `writing` whether a write was under way at that moment (its temporary files were there).
    Killed { writing: bool },
    /// It finished on its own, successfully.
    Finished,
}

/// Starts `command` and kills it at a random moment: after a delay below `max_delay`, or, when
/// `at_a_write`, as soon as `writing()` sees a write under way (plus up to 2 ms). A run that ends on
/// its own must succeed: a failure to load what an earlier kill left is a failed test.
fn start_and_kill(
    mut command: Command,
    moments: &mut Moments,
    max_delay: Duration,
    at_a_write: bool,
    writing: &dyn Fn() -> bool,
) -> Ending {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start clip");
    let started = Instant::now();
    let delay = Duration::from_micros(moments.below(max_delay.as_micros() as u64));
    let extra = Duration::from_micros(moments.below(2000));
    let mut seen_write: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            assert!(status.success(), "{command:?} failed on its own: {stderr}");
            return Ending::Finished;
        }
        let due = if at_a_write {
            if seen_write.is_none() && writing() {
                seen_write = Some(Instant::now());
            }
            // no write seen within the window: kill anyway
            seen_write.is_some_and(|t| t.elapsed() >= extra) || started.elapsed() > max_delay * 2
        } else {
            started.elapsed() >= delay
        };
        if due {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return Ending::Killed { writing: writing() };
        }
        std::thread::sleep(Duration::from_micros(if at_a_write { 200 } else { 1000 }));
    }
}

fn clip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clip"))
}

fn has_entry(dir: &Path, test: impl Fn(&str) -> bool) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| test(&e.file_name().to_string_lossy()))
        })
        .unwrap_or(false)
}

/// Step directories under `checkpoints`, in order.
fn checkpoints(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A committed checkpoint is whole: its state parses and its weights load into the model it names.
fn check_checkpoint(dir: &Path) -> (usize, Vec<f64>) {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let model: clip::ClipConfig = serde_json::from_value(state["model"].clone()).unwrap();
    let device = Default::default();
    let fresh = clip_train::TrainModel::<Flex> {
        clip: model.init::<Flex>(&device).unwrap(),
    };
    fresh
        .load_file(
            dir.join("model"),
            &BinFileRecorder::<FullPrecisionSettings>::new(),
            &device,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(dir.join("optim.bin").is_file(), "{}", dir.display());
    let losses = state["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    (state["step"].as_u64().unwrap() as usize, losses)
}

#[test]
fn training_killed_at_random_moments_resumes_with_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 30;
    let reference = train_config::config(dir.path(), "reference", "info_nce", steps, "");
    // a whole run, start-up included, lasts about as long as this one
    let start = Instant::now();
    let out = clip()
        .args(["train", "--config"])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = start.elapsed();
    let expected =
        check_checkpoint(&checkpoints(&dir.path().join("reference/checkpoints"))[steps - 1]);
    assert_eq!(expected.0, steps);

    let config = train_config::config(dir.path(), "killed", "info_nce", steps, "");
    let root = dir.path().join("killed/checkpoints");
    let mut moments = Moments::new("training");
    let (mut kills, mut while_writing, mut finished, mut highest) = (0, 0, 0, 0);
    let writing = || has_entry(&root, |n| n.starts_with(".step-"));
    while kills < KILLS {
        let mut command = clip();
        command.args(["train", "--config"]).arg(&config);
        if !checkpoints(&root).is_empty() {
            command.args(["--resume", "latest"]);
        }
        match start_and_kill(command, &mut moments, whole, kills % 2 == 1, &writing) {
            Ending::Killed { writing } => {
                kills += 1;
                while_writing += usize::from(writing);
                // what the kill left: every committed checkpoint loads, and none went back
                if let Some(latest) = checkpoints(&root).last() {
                    let (step, losses) = check_checkpoint(latest);
                    assert!(step >= highest, "step {step} after {highest}");
                    assert_eq!(losses[..], expected.1[..step], "losses up to step {step}");
                    highest = step;
                }
            }
            Ending::Finished => {
                // the run reached its end between kills: check it, and start another
                finished += 1;
                let (_, losses) = check_checkpoint(&checkpoints(&root)[steps - 1]);
                assert_eq!(losses, expected.1);
                std::fs::remove_dir_all(dir.path().join("killed")).unwrap();
                highest = 0;
            }
        }
    }
    // after the last kill, `--resume latest` finishes the run with the uninterrupted run's losses
    let mut last = clip();
    last.args(["train", "--config"]).arg(&config);
    if !checkpoints(&root).is_empty() {
        last.args(["--resume", "latest"]);
    }
    let out = last.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (step, losses) = check_checkpoint(&checkpoints(&root)[steps - 1]);
    assert_eq!((step, losses), expected);
    assert!(dir.path().join("killed/model/model.bpk").is_file());
    println!(
        "training: {kills} kills ({while_writing} inside a checkpoint write), {finished} runs finished \
         between kills; a whole run takes {whole:?}"
    );
    assert!(
        while_writing >= 4,
        "only {while_writing} kills inside a checkpoint write"
    );
}

/// The rows of an index database as (path, vector), checked sound first: SQLite's integrity check
/// passes and no path is stored twice.
fn index_rows(db: &Path) -> Vec<(String, Vec<f32>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
    // a kill while the database was being created leaves a file without a schema (the next run
    // takes it as new); anything else must have its tables
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    if tables == 0 {
        return Vec::new();
    }
    let twice: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT path FROM images GROUP BY path HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(twice, 0, "paths stored twice in {}", db.display());
    let mut rows: Vec<(String, Vec<f32>)> = conn
        .prepare("SELECT path, vector FROM images WHERE vector IS NOT NULL")
        .unwrap()
        .query_map([], |r| {
            let path: Vec<u8> = r.get(0)?;
            let bytes: Vec<u8> = r.get(1)?;
            Ok((
                clip_search::store::path_from_bytes(&path)
                    .to_string_lossy()
                    .into_owned(),
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `clip search`'s top 10 for `query`: (path, score), best first.
fn search_results(db: &Path, query: &str) -> Vec<(String, f64)> {
    let out = clip()
        .args(["search", "--db"])
        .arg(db)
        .args(["--json", "-n", "10", query])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let hit = serde_json::from_str::<Value>(l).unwrap();
            (hit["path"].to_string(), hit["score"].as_f64().unwrap())
        })
        .collect()
}

/// Two top-10 lists agree: the same score at every rank (within what batching changes in the
/// vectors), and the same images, except where two scores tie within that.
fn assert_same_results(got: &[(String, f64)], want: &[(String, f64)]) {
    const TIE: f64 = 1e-4;
    assert_eq!(got.len(), want.len());
    for ((_, a), (_, b)) in got.iter().zip(want) {
        assert!((a - b).abs() < TIE, "{got:?}\n{want:?}");
    }
    for (rank, (path, score)) in want.iter().enumerate() {
        let tied = want
            .iter()
            .enumerate()
            .any(|(other, (_, s))| other != rank && (s - score).abs() < TIE)
            || (rank + 1 == want.len());
        if !tied {
            assert_eq!(&got[rank].0, path, "{got:?}\n{want:?}");
        }
    }
}

#[test]
fn indexing_killed_at_random_moments_stores_every_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let n = 240;
    scenes::render(&photos, n, 11, 48);
    let index = |db: &Path| {
        let mut command = clip();
        command.arg("index").arg(&photos).arg("--db").arg(db).args([
            "--batch-size",
            "8",
            "--workers",
            "1",
            "--ann",
        ]);
        command
    };
    let reference = dir.path().join("reference.sqlite3");
    let start = Instant::now();
    assert!(index(&reference).status().unwrap().success());
    let whole = start.elapsed();
    let expected = index_rows(&reference);
    assert_eq!(expected.len(), n);

    let db = dir.path().join("killed.sqlite3");
    let ann_temp = PathBuf::from(format!("{}.usearch.tmp", db.display()));
    let mut moments = Moments::new("index");
    let (mut kills, mut while_writing, mut finished) = (0, 0, 0);
    // the writes to catch: the approximate index's file, and the SQLite journal between commits
    let writing = || ann_temp.exists();
    let mut stored = 0;
    while kills < KILLS {
        match start_and_kill(index(&db), &mut moments, whole, kills % 2 == 1, &writing) {
            Ending::Killed { writing } => {
                kills += 1;
                while_writing += usize::from(writing);
                if db.exists() {
                    let rows = index_rows(&db);
                    assert!(rows.len() >= stored, "{} rows after {stored}", rows.len());
                    stored = rows.len();
                }
            }
            Ending::Finished => {
                finished += 1;
                assert_eq!(index_rows(&db).len(), n);
                for suffix in ["", "-wal", "-shm", ".usearch"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
                stored = 0;
            }
        }
    }
    assert!(index(&db).status().unwrap().success());
    let rows = index_rows(&db);
    assert_eq!(
        rows.iter().map(|r| &r.0).collect::<Vec<_>>(),
        expected.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((path, got), (_, want)) in rows.iter().zip(&expected) {
        assert!(max_difference(got, want) < 1e-5, "{path}");
    }
    // the approximate index agrees with the database: the same answers as the uninterrupted index
    for query in ["a red bag", "a blue sneaker"] {
        assert_same_results(
            &search_results(&db, query),
            &search_results(&reference, query),
        );
    }
    println!(
        "index: {kills} kills ({while_writing} while the approximate index was written), {finished} \
         runs finished between kills; a whole run takes {whole:?}"
    );
}

/// The committed files of an embed-dataset output: (relative path, bytes), temporary files excluded.
fn committed(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["img_emb", "metadata", "done"] {
        for entry in std::fs::read_dir(out.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                files.push((
                    format!("{sub}/{name}"),
                    std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn embed_dataset_killed_at_random_moments_keeps_finished_shards_and_redoes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    scenes::render(&photos, 96, 5, 48);
    let shards = 8;
    let embed = |out: &Path| {
        let mut command = clip();
        command
            .args(["embed-dataset", "--input"])
            .arg(&photos)
            .arg("--output")
            .arg(out)
            .args(["--shards", &shards.to_string(), "--batch-size", "4"]);
        command
    };
    let reference = dir.path().join("reference");
    let start = Instant::now();
    assert!(embed(&reference).status().unwrap().success());
    let whole = start.elapsed();
    let expected = committed(&reference);
    // shards' done markers name nothing run-specific: the files compare byte for byte
    assert_eq!(expected.len(), 3 * shards);

    let out = dir.path().join("killed");
    let mut moments = Moments::new("embed-dataset");
    let (mut kills, mut while_writing, mut finished) = (0, 0, 0);
    // a shard's last writes: its metadata (written after the embeddings) and the renames
    let writing = || has_entry(&out.join("metadata"), |n| n.starts_with(".metadata_"));
    while kills < KILLS {
        match start_and_kill(embed(&out), &mut moments, whole, kills % 2 == 1, &writing) {
            Ending::Killed { writing } => {
                kills += 1;
                while_writing += usize::from(writing);
                // every shard marked done is whole and the same as the uninterrupted run's
                for (name, bytes) in committed(&out) {
                    if let Some(shard) = name.strip_prefix("done/") {
                        let stem = shard.trim_end_matches(".json");
                        for file in [
                            format!("img_emb/img_emb_{stem}.npy"),
                            format!("metadata/metadata_{stem}.parquet"),
                        ] {
                            let want = &expected.iter().find(|e| e.0 == file).unwrap().1;
                            assert_eq!(&std::fs::read(out.join(&file)).unwrap(), want, "{file}");
                        }
                        let want = &expected.iter().find(|e| e.0 == name).unwrap().1;
                        assert_eq!(&bytes, want, "{name}");
                    }
                }
            }
            Ending::Finished => {
                finished += 1;
                assert_eq!(committed(&out), expected);
                std::fs::remove_dir_all(&out).unwrap();
            }
        }
    }
    assert!(embed(&out).status().unwrap().success());
    assert_eq!(committed(&out), expected);
    // the killed runs' temporary files are gone with their shards redone
    for sub in ["", "img_emb", "metadata", "done"] {
        let left = has_entry(&out.join(sub), |n| n.starts_with('.'));
        assert!(
            !left,
            "a temporary file left in {}",
            out.join(sub).display()
        );
    }
    println!(
        "embed-dataset: {kills} kills ({while_writing} while a shard was being committed), \
         {finished} runs finished between kills; a whole run takes {whole:?}"
    );
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A full disk during a checkpoint: training runs on a tmpfs with room for one checkpoint and a half
/// (a mount namespace of its own: `unshare`, root or an unprivileged user namespace). The second
/// checkpoint fails with an error that says "no space", and the first is left whole; no temporary
/// directory stays behind to keep the disk full.
#[test]
fn a_full_disk_leaves_the_previous_checkpoint_whole() {
    let dir = tempfile::tempdir().unwrap();
    // one checkpoint's size, from a run of one step on the real disk
    let probe = train_config::config(dir.path(), "probe", "info_nce", 1, "");
    assert!(clip()
        .args(["train", "--config"])
        .arg(&probe)
        .status()
        .unwrap()
        .success());
    let one = dir_size(&checkpoints(&dir.path().join("probe/checkpoints"))[0]);
    let room = one * 3 / 2 / 1024 + 1;

    let mount = dir.path().join("small-disk");
    std::fs::create_dir(&mount).unwrap();
    let config = train_config::config(&mount, "run", "info_nce", 3, "");
    let moved = dir.path().join("run.toml");
    std::fs::rename(&config, &moved).unwrap();
    let copy = dir.path().join("copied");
    let script = format!(
        "mount -t tmpfs -o size={room}k tmpfs '{mnt}' || exit 77
         '{clip}' train --config '{config}' 2> '{dir}/stderr.txt'
         echo $? > '{dir}/status'
         cp -r '{mnt}/run/checkpoints' '{copy}'",
        mnt = mount.display(),
        clip = env!("CARGO_BIN_EXE_clip"),
        config = moved.display(),
        dir = dir.path().display(),
        copy = copy.display(),
    );
    // a mount namespace: as root, or else (or where root lacks the capability, in a container) in an
    // unprivileged user namespace
    let mut tried = Vec::new();
    let mounted = [&["--mount"][..], &["--mount", "--map-root-user"][..]]
        .iter()
        .any(|flags| {
            let status = Command::new("unshare")
                .args(*flags)
                .args(["sh", "-c", &script])
                .stderr(Stdio::null())
                .status();
            tried.push(format!("unshare {flags:?}: {status:?}"));
            status.is_ok_and(|s| s.success())
        });
    if !mounted {
        // no mount namespace here (no unshare, or namespaces disabled): say so
        let required = std::env::var_os("CLIP_REQUIRE_NAMESPACES").is_some();
        assert!(!required, "cannot mount a small tmpfs: {tried:?}");
        println!("skipped: cannot mount a small tmpfs in a namespace ({tried:?})");
        return;
    }
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    let exit = std::fs::read_to_string(dir.path().join("status")).unwrap();
    assert_ne!(
        exit.trim(),
        "0",
        "training went on with a full disk: {stderr}"
    );
    assert!(
        stderr.contains("no space left") && stderr.contains("step-0000002"),
        "{stderr}"
    );
    let kept = checkpoints(&copy);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let (step, _) = check_checkpoint(&kept[0]);
    assert_eq!(step, 1);
    assert!(!has_entry(&copy, |n| n.starts_with(".step-")));
    println!(
        "full disk: a {room} KiB tmpfs, checkpoints of {one} bytes: {}",
        stderr.lines().last().unwrap_or("")
    );
}
