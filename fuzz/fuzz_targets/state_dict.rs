//! Weight files: safetensors, PyTorch pickles (zip and legacy) and TorchScript archives, read as data
//! (nothing in a pickle is executed). Reading must give tensors or a typed error naming the file.
#![no_main]
use clip::StateDict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["w.safetensors", "w.bin", "w.pt", "w.pth"];
    let name = names[data.first().copied().unwrap_or(0) as usize % names.len()];
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join(name);
    if std::fs::write(&path, data.get(1..).unwrap_or_default()).is_err() {
        return;
    }
    if let Ok(state) = StateDict::read(&path) {
        let _ = state.layout();
        let _ = state.shapes();
    }
});
