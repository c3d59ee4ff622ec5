//! Model configs as users hand them over: open_clip's model config and `open_clip_config.json`,
//! transformers' `config.json` and `preprocessor_config.json`, and this library's own format.
#![no_main]
use clip::pretrained::{preprocess_from_hf, preprocess_from_open_clip};
use clip::ClipConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(config) = ClipConfig::from_open_clip_json(&json) {
        let _ = config.to_open_clip_json();
        let _ = config.to_hf_json();
    }
    let _ = ClipConfig::from_open_clip_json(json.get("model_cfg").unwrap_or(&json));
    let _ = ClipConfig::from_hf_json(&json);
    let _ = serde_json::from_value::<ClipConfig>(json.clone());
    let _ = preprocess_from_hf(&json, 224);
    let _ = preprocess_from_open_clip(Some(&json), 224);
});
