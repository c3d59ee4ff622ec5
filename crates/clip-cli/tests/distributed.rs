//! Data-parallel training across processes on 127.0.0.1: two `clip train` ranks (each half of every
//! batch) take the steps one process takes on the whole batch; a rank that dies stops the other with
//! an error naming it; mismatched configs and an unreachable coordinator are refused by name.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

#[path = "support/train_config.rs"]
mod train_config;
use train_config::config;

/// One run of processes at a time: they share two cores, and their ports must not meet.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A base port with it and the next `count` ports free on 127.0.0.1 (the coordinator and the ranks'
/// data ports; burn-collective takes no port 0), never the same base twice in this process.
fn free_ports(count: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let seed = (std::process::id() % 2000) as u16 * 16;
    loop {
        let i = NEXT.fetch_add(8, std::sync::atomic::Ordering::Relaxed);
        let base = 20000 + (seed + i) % 40000;
        if (0..=count).all(|k| std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok()) {
            return base;
        }
    }
}

fn rank(config: &Path, rank: usize, world: usize, port: u16, timeout: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["train", "--config"])
        .arg(config)
        .args(["--collective-timeout", &timeout.to_string()])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn single(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["train", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn wait(child: Child, name: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Every float parameter of a saved model, in module order.
fn parameters(dir: &Path) -> Vec<(String, Vec<f32>)> {
    struct Collect(Vec<(String, Vec<f32>)>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
            let values = param.val().into_data().convert::<f32>().to_vec().unwrap();
            self.0
                .push((format!("#{} {:?}", self.0.len(), param.dims()), values));
        }
    }
    let model = clip::Pretrained::<Flex>::load(dir, &Default::default()).unwrap();
    let mut collect = Collect(Vec::new());
    model.model.visit(&mut collect);
    collect.0
}

fn losses(dir: &Path) -> Vec<f64> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    report["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect()
}

/// The largest relative difference (max |a − b| / max |a|, per tensor) between two saved models'
/// parameters, and the tensor it is in.
fn largest_difference(a: &Path, b: &Path) -> (f32, String) {
    let (pa, pb) = (parameters(a), parameters(b));
    assert_eq!(pa.len(), pb.len());
    let mut worst = (0f32, String::new());
    for ((name, x), (_, y)) in pa.iter().zip(&pb) {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        if diff / scale > worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

/// What two ranks give against one process: the largest relative difference of the losses (3
/// steps) and of the parameters after them, against one process on one thread, and of the
/// parameters against one process on two threads (the same split of the batch as the two ranks).
fn two_ranks_against_one(loss: &str) -> (f64, f32, f32) {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let one = config(dir.path(), "one", loss, 3, "");
    let threads = config(dir.path(), "threads", loss, 3, "");
    let text = std::fs::read_to_string(&threads)
        .unwrap()
        .replace("threads = 1", "threads = 2");
    std::fs::write(&threads, text).unwrap();
    let two = config(dir.path(), "two", loss, 3, "");
    for c in [&one, &threads] {
        let out = single(c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_ports(2);
    let ranks = [rank(&two, 0, 2, port, 60), rank(&two, 1, 2, port, 60)];
    let outputs: Vec<Output> = ranks
        .into_iter()
        .enumerate()
        .map(|(r, c)| wait(c, &format!("rank {r}")))
        .collect();
    // rank 0 alone reports; standard output holds its JSON summary and nothing else
    let summary: serde_json::Value = serde_json::from_slice(&outputs[0].stdout).unwrap();
    assert_eq!(summary["steps"], 3);
    assert!(outputs[1].stdout.is_empty(), "{:?}", outputs[1].stdout);

    let (a, b) = (
        losses(&dir.path().join("one")),
        losses(&dir.path().join("two")),
    );
    assert_eq!(a.len(), 3);
    let loss_error = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / x.abs())
        .fold(0.0, f64::max);
    let model = |name: &str| dir.path().join(name).join("model");
    let against_one = largest_difference(&model("one"), &model("two"));
    let against_threads = largest_difference(&model("threads"), &model("two"));
    let threads_against_one = largest_difference(&model("one"), &model("threads"));
    println!(
        "{loss}: losses {a:?} vs {b:?} (largest relative difference {loss_error:.1e}); parameters: \
         {:.1e} relative against one thread (in {}), {:.1e} against two threads; two threads \
         against one: {:.1e} (in {})",
        against_one.0, against_one.1, against_threads.0, threads_against_one.0, threads_against_one.1
    );
    // the parameters moved: a comparison of two untouched models would prove nothing
    let d = tempfile::tempdir().unwrap();
    let zero = config(d.path(), "zero", loss, 1, "");
    assert!(single(&zero).status.success());
    let (moved, _) = largest_difference(&model("one"), &d.path().join("zero/model"));
    assert!(
        moved > 1e-2,
        "training did not change the parameters: {moved}"
    );
    (loss_error, against_one.0, against_threads.0)
}

// Two ranks split each batch as one process's two threads do, and compute the same sums: their
// parameters agree with that run's to float rounding. Against one thread the losses agree within
// 1e-7, but AdamW divides each gradient by its running RMS plus eps = 1e-6, so an element whose
// gradient is as small as eps moves by a step of order lr whatever the gradient's last bits: rounding
// in the sums (1e-7 relative) becomes up to ~1e-4 of the largest weight of the token table or the
// patch convolution after 3 steps — the same as two threads against one, which the single-process
// trainer has always had.
#[test]
fn two_ranks_take_the_steps_of_one_process() {
    let (loss, one, threads) = two_ranks_against_one("info_nce");
    assert!(loss < 1e-6, "losses {loss}");
    assert!(threads < 1e-6, "parameters against two threads {threads}");
    assert!(one < 2e-4, "parameters against one thread {one}");
}

#[test]
fn two_ranks_train_siglip_as_one_process() {
    let (loss, one, threads) = two_ranks_against_one("siglip");
    assert!(loss < 1e-6, "losses {loss}");
    assert!(threads < 1e-6, "parameters against two threads {threads}");
    assert!(one < 2e-4, "parameters against one thread {one}");
}

#[test]
fn ranks_compose_with_accumulation_threads_and_a_locked_tower() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let edit = |path: &Path, threads: usize| {
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("accumulation = 1", "accumulation = 2")
            .replace("threads = 1", &format!("threads = {threads}"))
            .replace("lock_image = false", "lock_image = true");
        std::fs::write(path, text).unwrap();
    };
    // one process on 4 threads splits each 16-pair micro-batch as 2 ranks × 2 threads do
    let one = config(dir.path(), "one", "info_nce", 2, "");
    edit(&one, 4);
    let two = config(dir.path(), "two", "info_nce", 2, "");
    edit(&two, 2);
    let out = single(&one);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_ports(2);
    let ranks = [rank(&two, 0, 2, port, 60), rank(&two, 1, 2, port, 60)];
    for (r, c) in ranks.into_iter().enumerate() {
        let err = String::from_utf8_lossy(&wait(c, &format!("rank {r}")).stderr).into_owned();
        assert!(
            err.contains(&format!(
                "rank {r} of 2: 8 of each micro-batch's 16 pairs on 2 thread(s)"
            )),
            "{err}"
        );
    }
    let model = |name: &str| dir.path().join(name).join("model");
    let (difference, tensor) = largest_difference(&model("one"), &model("two"));
    let (a, b) = (
        losses(&dir.path().join("one")),
        losses(&dir.path().join("two")),
    );
    println!("accumulation 2, 2 × 2 threads, image tower locked: losses {a:?} vs {b:?}; parameters {difference:.1e} (in {tensor})");
    // the same losses; the gradients are summed in another order (each rank adds its parts and
    // micro-batches, then the ranks are added), so the parameters agree to rounding through AdamW
    // (2.3e-6 when written), not to the bit
    assert_eq!(a, b);
    assert!(difference < 1e-4, "{difference} in {tensor}");
    // the locked image tower did not move, the text tower did
    let d = tempfile::tempdir().unwrap();
    let zero = config(d.path(), "zero", "info_nce", 1, "");
    edit(&zero, 4);
    assert!(single(&zero).status.success());
    let (moved, _) = largest_difference(&model("two"), &d.path().join("zero/model"));
    assert!(moved > 1e-3, "{moved}");
}

#[test]
fn a_rank_that_dies_stops_the_others_with_its_name() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let long = config(dir.path(), "long", "info_nce", 100_000, "");
    let port = free_ports(2);
    let mut first = rank(&long, 0, 2, port, 5);
    let mut second = rank(&long, 1, 2, port, 5);
    // let them train a few steps (rank 0 commits a checkpoint each step), then kill rank 1
    let checkpoints = dir.path().join("long/checkpoints");
    let start = Instant::now();
    while std::fs::read_dir(&checkpoints).map_or(0, |d| d.count()) < 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoints");
        std::thread::sleep(Duration::from_millis(50));
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "rank 0 kept waiting for the dead rank"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    let last = err.lines().last().unwrap_or_default();
    println!(
        "rank 0 stopped {:.1} s after rank 1 died: {last}",
        killed.elapsed().as_secs_f64()
    );
    assert!(
        last.contains(&format!("rank 1 (127.0.0.1:{})", port + 2)),
        "{err}"
    );
    // every committed checkpoint is whole: the newest resumes in a single process
    let latest = std::fs::read_dir(&checkpoints)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .max()
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap();
    let step = state["step"].as_u64().unwrap();
    let resumed = config(dir.path(), "long", "info_nce", step as usize + 1, "");
    let out = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["train", "--resume", "latest", "--config"])
        .arg(&resumed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ranks_that_resume_different_checkpoints_are_refused() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    // one step of a two-step run, checkpointed
    let config = config(dir.path(), "ck", "info_nce", 2, "stop_after = 1");
    assert!(single(&config).status.success());
    // rank 0 resumes it, rank 1 starts afresh: the same config, another starting point
    let port = free_ports(2);
    let resumed = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(["train", "--resume", "latest", "--config"])
        .arg(&config)
        .args(["--collective-timeout", "30"])
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let fresh = rank(&config, 1, 2, port, 30);
    for out in [resumed, fresh].map(|c| c.wait_with_output().unwrap()) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("every rank must resume the same checkpoint")
                && err.contains("at step 1")
                && err.contains("at step 0"),
            "{err}"
        );
    }
}

#[test]
fn mismatched_ranks_and_launches_are_refused_by_name() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = config(dir.path(), "a", "info_nce", 2, "");
    let b = config(dir.path(), "b", "info_nce", 2, "");
    // another learning rate on rank 1
    let text = std::fs::read_to_string(&b)
        .unwrap()
        .replace("lr = 3e-3", "lr = 1e-3");
    std::fs::write(&b, text).unwrap();
    let port = free_ports(2);
    let outputs =
        [rank(&a, 0, 2, port, 30), rank(&b, 1, 2, port, 30)].map(|c| c.wait_with_output().unwrap());
    for out in &outputs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("`lr` differs"), "{err}");
    }
    // a batch the world cannot share equally
    let out = rank(&a, 0, 3, free_ports(3), 5).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("batch_size 16 is not divisible by the world size 3"),
        "{err}"
    );
    // no coordinator: rank 1 alone gives up, naming where it looked
    let port = free_ports(2);
    let out = rank(&a, 1, 2, port, 2).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach the coordinator at 127.0.0.1:{port}")),
        "{err}"
    );
    // a rank outside the world
    let out = rank(&a, 2, 2, port, 2).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RANK 2 is out of range for WORLD_SIZE 2"),
        "{err}"
    );
}
