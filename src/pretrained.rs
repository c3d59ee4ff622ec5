//! Loading a model as open_clip and Hugging Face publish them: a directory (weights + config
//! [+ preprocessor config]) or a single weights file whose architecture is inferred from its shapes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::{get_device_settings, Backend};
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use burn_store::{
    BurnpackStore, HalfPrecisionAdapter, ModuleAdapter, ModuleSnapshot, TensorSnapshot,
};
use clip_data::{CropRounding, Interpolation, PreprocessConfig, ResizeMode, CLIP_MEAN, CLIP_STD};
use clip_tokenizer::{HfTokenizer, TextTokenizer};
use serde_json::Value;

use crate::config::ClipConfig;
use crate::error::ClipError;
use crate::model::Clip;
use crate::weights::{
    load_state_dict_owned, open_clip_state_dict, write_atomic, write_safetensors, Layout, StateDict,
};

/// Weight file names open_clip and Hugging Face publish, in the order they are preferred.
pub const WEIGHT_FILES: [&str; 4] = [
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
];
const WEIGHT_EXTENSIONS: [&str; 4] = ["safetensors", "bin", "pt", "pth"];
/// Config file of this library's own format (`clip_config.json` + `model.bpk`): the architecture and
/// the preprocessing, as JSON.
pub const BURN_CONFIG: &str = "clip_config.json";
/// Weights file of this library's own format: burn's burnpack, f32 or f16 tensors.
pub const BURN_WEIGHTS: &str = "model.bpk";

/// Where a model's architecture came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// An open_clip `open_clip_config.json` (its path).
    OpenClip(PathBuf),
    /// A Hugging Face `config.json` (its path).
    HuggingFace(PathBuf),
    /// This library's [`BURN_CONFIG`] (its path).
    Burn(PathBuf),
    /// Inferred from the tensor shapes of a bare weights file ([`ClipConfig::infer`]), or given with
    /// a model built in memory ([`Pretrained::from_model`]).
    Inferred,
    /// The model compiled into the library.
    Bundled,
    /// A bundled open_clip config, by name ([`Pretrained::load_named`]).
    Named(String),
}

/// A model ready to embed: weights, architecture, preprocessing and tokenizer.
#[derive(Debug)]
pub struct Pretrained<B: Backend> {
    /// The network.
    pub model: Clip<B>,
    /// Its architecture.
    pub config: ClipConfig,
    /// How images are resized, cropped and normalized for it, as the model's own files say (open_clip's
    /// or Hugging Face's rules), CLIP's defaults otherwise.
    pub preprocess: PreprocessConfig,
    /// The tokenizer, set to the model's context length: CLIP's BPE, or the Hugging Face tokenizer
    /// the config names ([`TextTokenizer::Missing`] when its `tokenizer.json` was not found).
    pub tokenizer: TextTokenizer,
    /// The weights file read (`<in memory>` for [`from_model`](Self::from_model), a placeholder
    /// name for the bundled model).
    pub weights: PathBuf,
    /// Key layout of the state dict read; `None` for this library's own format, the bundled model
    /// and models built in memory.
    pub layout: Option<Layout>,
    /// Where the architecture came from.
    pub config_source: ConfigSource,
    /// Threads each batch is split over by the `embed_*` methods
    /// ([`Clip::encode_image_threaded`]); [`default_threads`] unless set with
    /// [`with_threads`](Self::with_threads).
    pub threads: usize,
}

/// One thread per core on burn's CPU backends (`flex`, `ndarray`), which run most element-wise
/// operations on one core; 1 on GPU backends, which parallelize each operation themselves.
pub fn default_threads<B: Backend>() -> usize {
    let name = std::any::type_name::<B>();
    if ["burn_flex::", "burn_ndarray::"]
        .iter()
        .any(|cpu| name.contains(cpu))
    {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

fn read_json(path: &Path) -> Result<Value, ClipError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ClipError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The weights file of a model directory: the first of [`WEIGHT_FILES`] present, else its only
/// `*.safetensors`, `*.bin`, `*.pt` or `*.pth` file ([`ClipError::NoWeights`] if none,
/// [`ClipError::AmbiguousWeights`] if several).
pub fn find_weights(dir: &Path) -> Result<PathBuf, ClipError> {
    if let Some(name) = WEIGHT_FILES.iter().find(|n| dir.join(n).is_file()) {
        return Ok(dir.join(name));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ClipError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ClipError::NoWeights {
            dir: dir.to_path_buf(),
            expected: WEIGHT_FILES.join(", "),
        }),
        _ => Err(ClipError::AmbiguousWeights {
            dir: dir.to_path_buf(),
            found: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn floats3(v: Option<&Value>, what: &str, default: [f32; 3]) -> Result<[f32; 3], ClipError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x.as_f64().ok_or_else(|| {
                    ClipError::Config(format!("{what} must hold numbers, found {x}"))
                })? as f32;
            }
            Ok(out)
        }
        Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
        Some(other) => Err(ClipError::Config(format!(
            "{what} must be 3 numbers, found {other}"
        ))),
    }
}

fn size_of(v: &Value, what: &str) -> Result<usize, ClipError> {
    let pick = |v: &Value| v.as_u64().map(|n| n as usize);
    let size = match v {
        Value::Number(_) => pick(v),
        Value::Array(a) if a.len() == 2 && a[0] == a[1] => pick(&a[0]),
        Value::Object(o) => o.get("shortest_edge").and_then(pick).or_else(|| {
            match (
                o.get("height").and_then(pick),
                o.get("width").and_then(pick),
            ) {
                (Some(h), Some(w)) if h == w => Some(h),
                _ => None,
            }
        }),
        _ => None,
    };
    size.ok_or_else(|| ClipError::Config(format!("{what} {v} is not a square size")))
}

/// open_clip's `preprocess_cfg` (size, mean, std, interpolation, resize_mode).
pub fn preprocess_from_open_clip(
    cfg: Option<&Value>,
    image_size: usize,
) -> Result<PreprocessConfig, ClipError> {
    let mut p = PreprocessConfig::clip(image_size);
    let Some(cfg) = cfg else { return Ok(p) };
    if let Some(size) = cfg.get("size") {
        p.size = size_of(size, "preprocess_cfg.size")?;
        p.resize_size = p.size;
    }
    p.mean = floats3(cfg.get("mean"), "preprocess_cfg.mean", CLIP_MEAN)?;
    p.std = floats3(cfg.get("std"), "preprocess_cfg.std", CLIP_STD)?;
    p.interpolation = match cfg.get("interpolation").and_then(Value::as_str) {
        None | Some("bicubic") => Interpolation::Bicubic,
        Some("bilinear") => Interpolation::Bilinear,
        Some(other) => {
            return Err(ClipError::Config(format!(
                "preprocess_cfg.interpolation {other:?} is not supported (bicubic, bilinear)"
            )))
        }
    };
    p.resize_mode = match cfg.get("resize_mode").and_then(Value::as_str) {
        None | Some("shortest") => ResizeMode::Shortest,
        Some("longest") => ResizeMode::Longest,
        Some("squash") => ResizeMode::Squash,
        Some(other) => {
            return Err(ClipError::Config(format!(
                "preprocess_cfg.resize_mode {other:?} is not one of shortest, longest, squash"
            )))
        }
    };
    Ok(p)
}

/// The preprocessing of a transformers directory without a `preprocessor_config.json`: the default
/// image processor of its model type (`CLIPImageProcessor`, `SiglipImageProcessor`,
/// `Siglip2ImageProcessor` with as many patches as the position grid has).
pub fn default_hf_preprocess(config: &ClipConfig) -> PreprocessConfig {
    let mut p = PreprocessConfig::clip(config.image_size());
    p.crop_rounding = CropRounding::Floor;
    if let crate::VisionConfig::SiglipVit {
        image_size,
        patch_size,
        naflex,
        ..
    } = config.vision
    {
        p.mean = [0.5; 3];
        p.std = [0.5; 3];
        p.resize_mode = ResizeMode::Squash;
        if naflex {
            let side = image_size / patch_size.max(1);
            p.resize_mode = ResizeMode::Patches {
                patch_size,
                max_patches: side * side,
            };
            p.interpolation = Interpolation::Bilinear;
        }
    }
    p
}

/// Hugging Face's `preprocessor_config.json`: `CLIPImageProcessor` (floor-rounded center crop),
/// `SiglipImageProcessor` (a resize to the square) or `Siglip2ImageProcessor` (NaFlex: each image at
/// its own grid of `patch_size` patches, at most `max_num_patches`).
pub fn preprocess_from_hf(json: &Value, image_size: usize) -> Result<PreprocessConfig, ClipError> {
    let mut p = PreprocessConfig::clip(image_size);
    p.crop_rounding = CropRounding::Floor;
    if let Some(crop) = json.get("crop_size") {
        p.size = size_of(crop, "crop_size")?;
    }
    p.resize_size = match json.get("size") {
        Some(size) => size_of(size, "size")?,
        None => p.size,
    };
    p.mean = floats3(json.get("image_mean"), "image_mean", CLIP_MEAN)?;
    p.std = floats3(json.get("image_std"), "image_std", CLIP_STD)?;
    // SigLIP's processor resizes to the square size directly, without a crop
    if json
        .get("image_processor_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("Siglip"))
    {
        p.resize_mode = ResizeMode::Squash;
        p.size = p.resize_size;
    }
    let naflex = json
        .get("image_processor_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("Siglip2"));
    if naflex {
        let number = |key: &str, default: u64| -> Result<usize, ClipError> {
            match json.get(key) {
                None => Ok(default as usize),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        ClipError::Config(format!(
                            "preprocessor_config.json {key} {v} is not a positive integer"
                        ))
                    }),
            }
        };
        p.resize_mode = ResizeMode::Patches {
            patch_size: number("patch_size", 16)?,
            max_patches: number("max_num_patches", 256)?,
        };
        p.size = image_size;
        p.resize_size = image_size;
    }
    p.interpolation = match json.get("resample").and_then(Value::as_u64) {
        None if naflex => Interpolation::Bilinear,
        None | Some(3) => Interpolation::Bicubic,
        Some(2) => Interpolation::Bilinear,
        Some(other) => {
            return Err(ClipError::Config(format!(
                "preprocessor_config.json resample {other} is not supported (2 bilinear, 3 bicubic)"
            )))
        }
    };
    for (flag, what) in [
        ("do_resize", "resizing"),
        ("do_center_crop", "center cropping"),
        ("do_normalize", "normalization"),
    ] {
        if json.get(flag).and_then(Value::as_bool) == Some(false) {
            return Err(ClipError::Config(format!(
                "preprocessor_config.json turns off {what} ({flag}: false), which is not supported"
            )));
        }
    }
    Ok(p)
}

impl<B: Backend> Pretrained<B> {
    /// Wraps a model built or trained in memory (CLIP's default preprocessing at its image size).
    pub fn from_model(model: Clip<B>, config: ClipConfig) -> Result<Self, ClipError> {
        Ok(Self {
            preprocess: PreprocessConfig::clip(config.image_size()),
            tokenizer: tokenizer_for(&config, None)?,
            weights: PathBuf::from("<in memory>"),
            layout: None,
            config_source: ConfigSource::Inferred,
            threads: default_threads::<B>(),
            model,
            config,
        })
    }

    /// Loads a model directory or a single weights file.
    ///
    /// A directory in this library's format ([`BURN_CONFIG`] + [`BURN_WEIGHTS`]) is read as such.
    /// Otherwise its weights file is found by [`find_weights`] and the architecture read from
    /// `open_clip_config.json` (with its `preprocess_cfg`), else from Hugging Face's `config.json` (with
    /// `preprocessor_config.json` if present), else inferred from the tensor shapes
    /// ([`ClipConfig::infer`]). A file path is read as weights, its architecture inferred. Weights
    /// may be safetensors or PyTorch pickles, in open_clip/OpenAI or Hugging Face layout ([`Layout`]);
    /// see [`StateDict::read`].
    ///
    /// # Errors
    ///
    /// [`ClipError::Io`] for a missing path, and the config and weights errors of [`ClipError`]
    /// naming the file and key at fault.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, ClipError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(ClipError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
        if path.is_dir() && path.join(BURN_CONFIG).is_file() && path.join(BURN_WEIGHTS).is_file() {
            return Self::load_burn(path, device);
        }
        let (weights, dir) = if path.is_dir() {
            (find_weights(path)?, Some(path))
        } else {
            (path.to_path_buf(), None)
        };
        let state_dict = StateDict::read(&weights)?;
        let open_clip_cfg = dir
            .map(|d| d.join("open_clip_config.json"))
            .filter(|p| p.is_file());
        let hf_cfg = dir.map(|d| d.join("config.json")).filter(|p| p.is_file());
        let (config, preprocess, config_source) = if let Some(cfg_path) = open_clip_cfg {
            let json = read_json(&cfg_path)?;
            let config =
                ClipConfig::from_open_clip_json(&json).map_err(|e| in_file(&cfg_path, e))?;
            let preprocess =
                preprocess_from_open_clip(json.get("preprocess_cfg"), config.image_size())
                    .map_err(|e| in_file(&cfg_path, e))?;
            (config, preprocess, ConfigSource::OpenClip(cfg_path))
        } else if let Some(cfg_path) = hf_cfg {
            let json = read_json(&cfg_path)?;
            let config = ClipConfig::from_hf_json(&json).map_err(|e| in_file(&cfg_path, e))?;
            let pre_path = cfg_path.with_file_name("preprocessor_config.json");
            let preprocess = if pre_path.is_file() {
                preprocess_from_hf(&read_json(&pre_path)?, config.image_size())
                    .map_err(|e| in_file(&pre_path, e))?
            } else {
                default_hf_preprocess(&config)
            };
            (config, preprocess, ConfigSource::HuggingFace(cfg_path))
        } else {
            let config =
                ClipConfig::infer(&state_dict.shapes()).map_err(|e| in_file(&weights, e))?;
            let mut preprocess = PreprocessConfig::clip(config.image_size());
            if state_dict.layout() == Layout::HuggingFace {
                preprocess.crop_rounding = CropRounding::Floor;
            }
            (config, preprocess, ConfigSource::Inferred)
        };
        Self::from_state_dict(state_dict, config, preprocess, config_source, device)
    }

    /// The model of `config` with the weights in `path` (any file [`StateDict::read`] takes).
    pub(crate) fn from_state_dict_file(
        path: &Path,
        config: ClipConfig,
        preprocess: PreprocessConfig,
        config_source: ConfigSource,
        device: &B::Device,
    ) -> Result<Self, ClipError> {
        let state_dict = StateDict::read(path)?;
        Self::from_state_dict(state_dict, config, preprocess, config_source, device)
    }

    fn from_state_dict(
        state_dict: StateDict,
        config: ClipConfig,
        preprocess: PreprocessConfig,
        config_source: ConfigSource,
        device: &B::Device,
    ) -> Result<Self, ClipError> {
        let weights = state_dict.path.clone();
        let mut model = config.init::<B>(device)?;
        let layout = load_state_dict_owned(&mut model, state_dict)?;
        let tokenizer = tokenizer_for(&config, weights.parent())?;
        Ok(Self {
            model,
            config,
            preprocess,
            tokenizer,
            weights,
            layout: Some(layout),
            config_source,
            threads: default_threads::<B>(),
        })
    }

    fn load_burn(dir: &Path, device: &B::Device) -> Result<Self, ClipError> {
        let cfg_path = dir.join(BURN_CONFIG);
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| ClipError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let weights = dir.join(BURN_WEIGHTS);
        let mut loaded = Self::from_burn_parts(
            &text,
            &cfg_path,
            BurnpackStore::from_file(&weights),
            &weights,
            device,
        )?;
        loaded.config_source = ConfigSource::Burn(cfg_path);
        Ok(loaded)
    }

    /// A model from a `clip_config.json` text and a burnpack store (file or memory).
    fn from_burn_parts(
        config_json: &str,
        cfg_path: &Path,
        mut store: BurnpackStore,
        weights: &Path,
        device: &B::Device,
    ) -> Result<Self, ClipError> {
        let json: Value = serde_json::from_str(config_json).map_err(|source| ClipError::Json {
            path: cfg_path.to_path_buf(),
            source,
        })?;
        let config: ClipConfig =
            serde_json::from_value(json["model"].clone()).map_err(|source| ClipError::Json {
                path: cfg_path.to_path_buf(),
                source,
            })?;
        let preprocess: PreprocessConfig = serde_json::from_value(json["preprocess"].clone())
            .map_err(|source| ClipError::Json {
                path: cfg_path.to_path_buf(),
                source,
            })?;
        let mut model = config.init::<B>(device)?;
        store = store.with_from_adapter(ConvertFloats(
            get_device_settings::<B>(device).float_dtype.into(),
        ));
        let result = model
            .load_from(&mut store)
            .map_err(|e| ClipError::Weights {
                path: weights.to_path_buf(),
                message: e.to_string(),
            })?;
        if let Some(missing) = result.missing.first() {
            return Err(ClipError::MissingKey {
                path: weights.to_path_buf(),
                key: missing.0.clone(),
            });
        }
        if let Some(error) = result.errors.first() {
            return Err(ClipError::Weights {
                path: weights.to_path_buf(),
                message: format!("{error:?}"),
            });
        }
        let tokenizer = tokenizer_for(&config, Some(cfg_path).and_then(Path::parent))?;
        Ok(Self {
            model,
            config,
            preprocess,
            tokenizer,
            weights: weights.to_path_buf(),
            layout: None,
            config_source: ConfigSource::Bundled,
            threads: default_threads::<B>(),
        })
    }

    /// The model shipped inside this library: a small ViT CLIP trained on Fashion-MNIST scenes
    /// (`configs/fashion-scenes.toml`); it knows 10 clothing classes and 7 colours, nothing else.
    #[cfg(feature = "bundled-model")]
    pub fn bundled(device: &B::Device) -> Result<Self, ClipError> {
        static CONFIG: &str = include_str!("../models/fashion-scenes/clip_config.json");
        static WEIGHTS: &[u8] = include_bytes!("../models/fashion-scenes/model.bpk");
        let name = Path::new("<bundled fashion-scenes model>");
        // include_bytes! data is only byte-aligned: copy tensors out instead of viewing them in place
        let store = BurnpackStore::from_static(WEIGHTS).zero_copy(false);
        Self::from_burn_parts(CONFIG, name, store, name, device)
    }

    /// [`load`](Self::load) the given path, or the bundled model when there is none.
    pub fn load_or_bundled(path: Option<&Path>, device: &B::Device) -> Result<Self, ClipError> {
        match path {
            Some(path) => Self::load(path, device),
            #[cfg(feature = "bundled-model")]
            None => Self::bundled(device),
            #[cfg(not(feature = "bundled-model"))]
            None => Err(ClipError::Input(
                "no --model given, and this build has no bundled model (feature bundled-model)"
                    .into(),
            )),
        }
    }

    /// Saves in this library's format: `clip_config.json` and `model.bpk` (burnpack) in `dir`.
    pub fn save_burn(&self, dir: impl AsRef<Path>) -> Result<(), ClipError> {
        self.write_burn(dir.as_ref(), false)
    }

    /// [`save_burn`](Self::save_burn) with the weights of linear, embedding, convolution and layer-norm
    /// layers stored as f16: half the size; [`load`](Self::load) reads them back in the device's precision
    /// (f32 unless [`set_precision`](crate::set_precision) chose another).
    pub fn save_burn_half(&self, dir: impl AsRef<Path>) -> Result<(), ClipError> {
        self.write_burn(dir.as_ref(), true)
    }

    fn write_burn(&self, dir: &Path, half: bool) -> Result<(), ClipError> {
        std::fs::create_dir_all(dir).map_err(|source| ClipError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let weights = dir.join(BURN_WEIGHTS);
        let tmp = crate::durable::temp_path(&weights);
        let mut store = BurnpackStore::from_file(&tmp).overwrite(true);
        if half {
            store = store.with_to_adapter(HalfPrecisionAdapter::new());
        }
        self.model.save_into(&mut store).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ClipError::Write {
                path: weights.clone(),
                message: e.to_string(),
            }
        })?;
        crate::durable::commit_file(&tmp, &weights).map_err(|e| ClipError::Write {
            path: weights.clone(),
            message: crate::durable::describe(&e),
        })?;
        self.copy_tokenizer(dir)?;
        let json = serde_json::json!({"model": self.config, "preprocess": self.preprocess});
        write_atomic(&dir.join(BURN_CONFIG), json.to_string().as_bytes())
    }

    /// Copies a Hugging Face tokenizer's files into `dir`, where [`load`](Self::load) finds them.
    pub(crate) fn copy_tokenizer(&self, dir: &Path) -> Result<(), ClipError> {
        let TextTokenizer::HuggingFace(tokenizer) = &self.tokenizer else {
            return Ok(());
        };
        // under the names `load` looks for, whatever the files were called
        for (file, name) in tokenizer
            .files()
            .iter()
            .zip(["tokenizer.json", "tokenizer_config.json"])
        {
            let bytes = std::fs::read(file).map_err(|source| ClipError::Io {
                path: file.clone(),
                source,
            })?;
            write_atomic(&dir.join(name), &bytes)?;
        }
        Ok(())
    }

    /// Uses the `tokenizer.json` at `path` (the file, or a directory holding it) for the Hugging Face
    /// tokenizer this model's config names, with the config's cleaning and context length.
    ///
    /// # Errors
    ///
    /// [`ClipError::Input`] when the model reads CLIP's own tokenizer, and the errors of reading the
    /// file or of a vocabulary larger than the model's token table.
    pub fn with_tokenizer(mut self, path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        self.tokenizer = hf_tokenizer(&self.config, &file)?;
        Ok(self)
    }

    /// Exports an open_clip model directory: `open_clip_model.safetensors` + `open_clip_config.json`.
    pub fn save_open_clip(&self, dir: impl AsRef<Path>) -> Result<(), ClipError> {
        self.write_open_clip(dir.as_ref(), |tensors| tensors)
    }

    /// The open_clip directory, the state dict passed through `store` (a storage type) on its way out.
    pub(crate) fn write_open_clip(
        &self,
        dir: &Path,
        store: impl FnOnce(BTreeMap<String, TensorData>) -> BTreeMap<String, TensorData>,
    ) -> Result<(), ClipError> {
        // checked before anything is written
        let model_cfg = self.config.to_open_clip_json()?;
        std::fs::create_dir_all(dir).map_err(|source| ClipError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut tensors = open_clip_state_dict(&self.model)?;
        if matches!(self.config.vision, crate::VisionConfig::SiglipVit { .. }) {
            tensors = crate::weights::open_clip_siglip_layout(tensors);
        }
        write_safetensors(&dir.join(WEIGHT_FILES[0]), &store(tensors))?;
        self.copy_tokenizer(dir)?;
        let p = &self.preprocess;
        let json = serde_json::json!({
            "model_cfg": model_cfg,
            "preprocess_cfg": {
                "size": p.size, "mean": p.mean, "std": p.std,
                "interpolation": match p.interpolation { Interpolation::Bicubic => "bicubic", Interpolation::Bilinear => "bilinear" },
                "resize_mode": match p.resize_mode { ResizeMode::Shortest => "shortest", ResizeMode::Longest => "longest", ResizeMode::Squash | ResizeMode::Patches { .. } => "squash" },
            },
        });
        write_atomic(
            &dir.join("open_clip_config.json"),
            json.to_string().as_bytes(),
        )
    }

    /// Token ids for texts (`[n, context_length]`).
    pub fn tokenize<S: AsRef<str>>(
        &self,
        texts: &[S],
        device: &B::Device,
    ) -> Result<Tensor<B, 2, Int>, ClipError> {
        self.check_vocabulary()?;
        Ok(self.tokenizer.tokenize_batch(texts, device)?)
    }

    /// A tokenizer that emits ids past the model's token table (CLIP's BPE on a model trained with
    /// another vocabulary) would read past the table: refused.
    fn check_vocabulary(&self) -> Result<(), ClipError> {
        let table = self.config.text.vocab_size;
        let needed = self.tokenizer.vocab_size();
        if table < needed {
            return Err(ClipError::Input(format!(
                "this model's token table has {table} rows, its tokenizer has {needed} tokens (ids \
                 up to {}): it was trained with another vocabulary; pass token ids to \
                 `model.encode_text` instead",
                needed - 1
            )));
        }
        Ok(())
    }

    /// Raw text embeddings `[n, embed_dim]`, in f32 whatever precision the model runs in.
    ///
    /// The padding after the longest text's end token is cut off before encoding: under the causal mask
    /// no position attends to a later one, so the pooled end-token state is the same, for a fraction
    /// of the work on short prompts.
    pub fn embed_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, ClipError> {
        self.check_vocabulary()?;
        let ids = Tensor::from_data(text_ids(&self.model.text, &self.tokenizer, texts)?, device);
        Ok(as_f32(self.model.encode_text_threaded(ids, self.threads)))
    }

    /// Sets the threads each batch is split over (1: no split).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Identifies the text side of this model (config and text-tower weights), so that a saved
    /// zero-shot classifier can tell whether it was built by it. FNV-1a, stable across runs and builds.
    pub fn fingerprint(&self) -> String {
        use burn_store::ModuleSnapshot;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(
            serde_json::to_string(&self.config.text)
                .unwrap_or_default()
                .as_bytes(),
        );
        for snapshot in self.model.collect(None, None, true) {
            let path = snapshot.full_path();
            if path.starts_with("text") {
                feed(path.as_bytes());
                if let Ok(data) = snapshot.to_data() {
                    feed(data.as_bytes());
                }
            }
        }
        format!("{hash:016x}")
    }

    /// Builds a zero-shot classifier for `labels` with `templates` (see `clip_zeroshot`); `progress`
    /// is called with the number of classes done after each batch.
    pub fn zero_shot_classifier(
        &self,
        labels: &[String],
        templates: &clip_zeroshot::Templates,
        device: &B::Device,
        progress: impl FnMut(usize),
    ) -> Result<clip_zeroshot::ZeroShotClassifier<B>, ClipError> {
        // about 256 prompts per forward pass
        let classes_per_batch = (256 / templates.templates.len().max(1)).max(1);
        Ok(clip_zeroshot::ZeroShotClassifier::build(
            labels,
            templates,
            &self.fingerprint(),
            classes_per_batch,
            |texts| self.embed_texts(texts, device),
            progress,
        )?)
    }

    /// Raw image embeddings `[n, embed_dim]` (f32, whatever precision the model runs in) for image files, decoded and preprocessed with
    /// [`preprocess`](Self::preprocess).
    pub fn embed_image_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, ClipError> {
        if paths.is_empty() {
            return Err(ClipError::Input("no images to embed".into()));
        }
        let images = paths
            .iter()
            .map(clip_data::load_rgb)
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_images(&images, device)
    }

    /// Raw image embeddings `[n, embed_dim]`, in f32, of decoded images, preprocessed with
    /// [`preprocess`](Self::preprocess).
    ///
    /// # Errors
    ///
    /// [`ClipError::Input`] for no images.
    pub fn embed_images(
        &self,
        images: &[clip_data::RgbImage],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, ClipError> {
        let batch = clip_data::prefetch::PreparedBatch::from_images(images, &self.preprocess);
        self.embed_prepared(&batch, device)
            .ok_or_else(|| ClipError::Input("no images to embed".into()))
    }

    /// Raw image embeddings `[n, embed_dim]`, in f32, of a batch from [`clip_data::prefetch`], in the
    /// batch's order; `None` when no file of it decoded. Images of one shape go through the model
    /// together (a square preprocessing has one shape; NaFlex one per aspect ratio).
    pub fn embed_prepared(
        &self,
        batch: &clip_data::prefetch::PreparedBatch,
        device: &B::Device,
    ) -> Option<Tensor<B, 2>> {
        let mut groups = batch.groups::<B>(device);
        if groups.len() == 1 {
            return groups.pop().map(|(_, pixels)| self.embed_pixels(pixels));
        }
        let (mut order, mut parts) = (Vec::with_capacity(batch.len()), Vec::new());
        for (rows, pixels) in groups {
            order.extend(rows);
            parts.push(self.embed_pixels(pixels));
        }
        if parts.is_empty() {
            return None;
        }
        // row k of the concatenation is image order[k]: gather each image's row back in place
        let mut place = vec![0i64; order.len()];
        for (k, &image) in order.iter().enumerate() {
            place[image] = k as i64;
        }
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(place, [order.len()]), device);
        Some(Tensor::cat(parts, 0).select(0, index))
    }

    /// Raw image embeddings `[n, embed_dim]`, in f32, of preprocessed pixels `[n, 3, height, width]`
    /// (one group of [`PreparedBatch::groups`](clip_data::prefetch::PreparedBatch::groups), say), the
    /// batch split over [`threads`](Self::threads).
    pub fn embed_pixels(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        as_f32(self.model.encode_image_threaded(pixels, self.threads))
    }

    /// Learnable parameters, counted as PyTorch counts them ([`Clip::parameter_count`]).
    pub fn parameter_count(&self) -> usize {
        self.model.parameter_count()
    }
}

/// `t` in f32 (a no-op for f32): the embeddings of a half-precision model, as the `embed_*` methods
/// return them.
fn as_f32<B: Backend>(t: Tensor<B, 2>) -> Tensor<B, 2> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

/// The tokenizer `config` names: CLIP's BPE, else the Hugging Face tokenizer of `dir/tokenizer.json`
/// ([`TextTokenizer::Missing`] when there is no such file), at the config's context length.
pub fn tokenizer_for(config: &ClipConfig, dir: Option<&Path>) -> Result<TextTokenizer, ClipError> {
    let Some(spec) = &config.text.hf_tokenizer else {
        return Ok(TextTokenizer::clip(config.text.context_length)?);
    };
    // a bare relative file name's directory is the working directory
    let dir = dir.map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    match dir {
        Some(dir) if dir.join("tokenizer.json").is_file() => {
            hf_tokenizer(config, &dir.join("tokenizer.json"))
        }
        dir => Ok(TextTokenizer::Missing {
            name: spec.name.clone(),
            looked_in: match dir {
                Some(dir) => format!("looked for {}", dir.join("tokenizer.json").display()),
                None => "the model came without a directory".into(),
            },
        }),
    }
}

/// The Hugging Face tokenizer of `file` set up as `config`'s text tower reads it.
fn hf_tokenizer(config: &ClipConfig, file: &Path) -> Result<TextTokenizer, ClipError> {
    let Some(spec) = &config.text.hf_tokenizer else {
        return Err(ClipError::Input(format!(
            "{}: this model reads text with CLIP's own tokenizer, which is built in; a tokenizer \
             file is only for models whose config names a Hugging Face tokenizer (hf_tokenizer_name)",
            file.display()
        )));
    };
    let tokenizer = HfTokenizer::from_file(file)?
        .with_cleaning(spec.cleaning)
        .with_strip_sep_token(spec.strip_sep_token)
        .with_context_length(config.text.context_length)?;
    let (table, size) = (config.text.vocab_size, tokenizer.vocab_size());
    if size > table {
        return Err(ClipError::Config(format!(
            "{}: the tokenizer has {size} tokens, the model's token table {table} rows: it is not the \
             tokenizer of this model ({})",
            file.display(),
            spec.name
        )));
    }
    Ok(TextTokenizer::HuggingFace(tokenizer))
}

/// Raw text embeddings of `texts` through `model`, with the padding after the longest text's end token
/// cut off first when that leaves the output unchanged ([`text_ids`]).
pub fn encode_texts<B: Backend, S: AsRef<str>>(
    model: &Clip<B>,
    tokenizer: &TextTokenizer,
    texts: &[S],
    device: &B::Device,
) -> Result<Tensor<B, 2>, ClipError> {
    let ids = text_ids(&model.text, tokenizer, texts)?;
    Ok(model.encode_text(Tensor::from_data(ids, device)))
}

/// The ids `text` should encode `texts` from: cut after the longest text's end token (the tower's
/// own, see [`trimmed_ids`]) when that leaves its output unchanged
/// ([`TextTransformer::trims_padding`](crate::encoders::TextTransformer::trims_padding)), else every
/// position up to the context length (a bidirectional tower sees the padding; a tower pooled at the
/// last position pools there).
pub fn text_ids<B: Backend, S: AsRef<str>>(
    text: &crate::encoders::TextTransformer<B>,
    tokenizer: &TextTokenizer,
    texts: &[S],
) -> Result<TensorData, ClipError> {
    if texts.is_empty() {
        return Err(ClipError::Input("no texts to embed".into()));
    }
    Ok(trim_ids_for(text, tokenizer.tokenize_data(texts)?))
}

/// [`text_ids`] of texts already tokenized to the full context (`[n, context]` ids of
/// [`TextTokenizer::tokenize_data`]): cut as `text_ids` cuts them.
pub fn trim_ids_for<B: Backend>(
    text: &crate::encoders::TextTransformer<B>,
    data: TensorData,
) -> TensorData {
    if !text.trims_padding() {
        return data;
    }
    trim_after(data, u32::try_from(text.end_of_text).ok())
}

/// `[n, used]` ids where `used` ends at the longest text's end token.
pub fn tokenize_trimmed<B: Backend, S: AsRef<str>>(
    tokenizer: &TextTokenizer,
    texts: &[S],
    device: &B::Device,
) -> Result<Tensor<B, 2, Int>, ClipError> {
    Ok(Tensor::from_data(trimmed_ids(tokenizer, texts)?, device))
}

/// The ids of [`tokenize_trimmed`] as `[n, used]` i64 data, on the host: the rows cut after the
/// longest text's end token ([`TextTokenizer::end_of_text`]; not cut without one).
pub fn trimmed_ids<S: AsRef<str>>(
    tokenizer: &TextTokenizer,
    texts: &[S],
) -> Result<TensorData, ClipError> {
    if texts.is_empty() {
        return Err(ClipError::Input("no texts to embed".into()));
    }
    Ok(trim_after(
        tokenizer.tokenize_data(texts)?,
        tokenizer.end_of_text(),
    ))
}

/// `[n, seq]` ids cut after the last column holding a row's first `end` token (unchanged when a row
/// has none, or without an `end`).
fn trim_after(data: TensorData, end: Option<u32>) -> TensorData {
    let (Some(end), &[n, seq]) = (end, data.shape.as_slice()) else {
        return data;
    };
    let Ok(ids) = data.to_vec::<i64>() else {
        return data;
    };
    let used = ids
        .chunks(seq.max(1))
        .map(|row| {
            row.iter()
                .position(|&id| id == i64::from(end))
                .map_or(seq, |p| p + 1)
        })
        .max()
        .unwrap_or(seq);
    if used == seq {
        return data;
    }
    let trimmed: Vec<i64> = ids
        .chunks(seq)
        .flat_map(|row| row[..used].iter().copied())
        .collect();
    TensorData::new(trimmed, [n, used])
}

fn in_file(path: &Path, e: ClipError) -> ClipError {
    match e {
        ClipError::Config(msg) => ClipError::Config(format!("{}: {msg}", path.display())),
        e => e,
    }
}

/// Reads a burnpack's float tensors (f32, or f16 / bf16 from [`Pretrained::save_burn_half`]) in the
/// dtype the model runs in (`crate::precision`). (burn's `HalfPrecisionAdapter` converts f32 and f16
/// both ways, which would turn an f32 file into f16 on an f32 device.)
#[derive(Clone, Debug)]
struct ConvertFloats(DType);

impl ModuleAdapter for ConvertFloats {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if !snapshot.dtype.is_float() || snapshot.dtype == target {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || Ok(data()?.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
