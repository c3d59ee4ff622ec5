//! Weight import and export. Any supported file is read into a state dict, renamed to open_clip's
//! layout (the canonical one: OpenAI's, and what open_clip and most checkpoints use), then mapped onto
//! the module's parameters with the few transposes burn's `[in, out]` Linear needs.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{get_device_settings, Backend};
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};
use burn_store::pytorch::PytorchReader;
use burn_store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use crate::error::ClipError;
use crate::model::Clip;

/// Whose key names a state dict uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// OpenAI / open_clip: packed `in_proj_weight`, `[in, out]` projections.
    OpenClip,
    /// Hugging Face `CLIPModel`: separate q/k/v, `[out, in]` projection Linears.
    HuggingFace,
}

impl Layout {
    /// Human-readable name, as error messages use it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::OpenClip => "open_clip/OpenAI",
            Layout::HuggingFace => "Hugging Face",
        }
    }
}

/// Tensors by name, in the dtype they were stored in.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// The file the tensors were read from (named in errors).
    pub path: PathBuf,
    /// Tensors by key, `state_dict.` / `module.` prefixes removed.
    pub tensors: BTreeMap<String, TensorData>,
}

fn weights_error(path: &Path, message: impl Into<String>) -> ClipError {
    ClipError::Weights {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl StateDict {
    /// Reads safetensors or PyTorch (zip or legacy pickle; data only, no code is executed) weights.
    /// A checkpoint nested as `{"state_dict": …}` and a DDP `module.` prefix are unwrapped.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let io = |source| ClipError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let tensors =
            match safetensors_header(&mut file).map_err(io)? {
                Some(header) => read_safetensors(path, &mut file, &header)?,
                None => {
                    drop(file);
                    if crate::torchscript::is_torchscript(path) {
                        without_derived(crate::torchscript::read_state_dict(path).map_err(|e| {
                            weights_error(path, format!("TorchScript archive: {e}"))
                        })?)
                    } else {
                        read_pytorch(path)?
                    }
                }
            };
        if tensors.is_empty() {
            return Err(weights_error(path, "the file holds no tensors"));
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors: unwrap_prefixes(tensors),
        })
    }

    /// Each tensor's shape, by key (what [`ClipConfig::infer`](crate::ClipConfig::infer) reads).
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.shape.to_vec()))
            .collect()
    }

    /// [`Layout::HuggingFace`] if any key starts with `text_model.` or `vision_model.`, otherwise
    /// [`Layout::OpenClip`].
    pub fn layout(&self) -> Layout {
        if self
            .tensors
            .keys()
            .any(|k| k.starts_with("text_model.") || k.starts_with("vision_model."))
        {
            Layout::HuggingFace
        } else {
            Layout::OpenClip
        }
    }
}

/// The JSON header of a safetensors file (its first 8 bytes are the header's length, and the header
/// starts with `{`), or `None` for any other file.
fn safetensors_header(file: &mut std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    let file_len = file.metadata()?.len();
    let mut prefix = [0u8; 9];
    if file_len < 9 || file.read_exact(&mut prefix).is_err() {
        return Ok(None);
    }
    let header_len = u64::from_le_bytes(prefix[..8].try_into().unwrap_or([0; 8]));
    if header_len > file_len - 8 || header_len > MAX_HEADER_BYTES || prefix[8] != b'{' {
        return Ok(None);
    }
    let mut header = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(8))?;
    file.read_exact(&mut header)?;
    Ok(Some(header))
}

/// safetensors' own limit on the header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Each tensor read from the file straight into its own buffer, in file order: the file is never
/// held in memory whole, so loading peaks at about one copy of the weights rather than two.
fn read_safetensors(
    path: &Path,
    file: &mut std::fs::File,
    header: &[u8],
) -> Result<BTreeMap<String, TensorData>, ClipError> {
    let metadata: Metadata = serde_json::from_slice(header)
        .map_err(|e| weights_error(path, format!("safetensors header: {e}")))?;
    let data_start = 8 + header.len() as u64;
    let file_len = file
        .metadata()
        .map_err(|source| ClipError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut infos: Vec<(String, &TensorInfo)> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(_, info)| info.data_offsets);
    let mut out = BTreeMap::new();
    for (name, info) in infos {
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            other => {
                return Err(ClipError::DType {
                    path: path.to_path_buf(),
                    key: name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (start, end) = info.data_offsets;
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize() / 8, |n, &d| n.checked_mul(d));
        let in_file = data_start
            .checked_add(end as u64)
            .is_some_and(|last| last <= file_len);
        if start > end || bytes != Some(end - start) || !in_file {
            return Err(weights_error(
                path,
                format!(
                    "tensor {name}: bytes {start}..{end} do not hold a {:?} {:?} inside a \
                     {file_len}-byte file (truncated or corrupt)",
                    info.dtype, info.shape
                ),
            ));
        }
        let mut data = vec![0u8; end - start];
        file.seek(SeekFrom::Start(data_start + start as u64))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| weights_error(path, format!("tensor {name}: {e}")))?;
        out.insert(
            name,
            TensorData::from_bytes_vec(data, info.shape.clone(), dtype),
        );
    }
    Ok(out)
}

fn read_pytorch(path: &Path) -> Result<BTreeMap<String, TensorData>, ClipError> {
    let reader = PytorchReader::new(path).map_err(|e| {
        weights_error(
            path,
            format!("not a safetensors file, a PyTorch checkpoint or a TorchScript archive ({e})"),
        )
    })?;
    reader
        .into_tensors()
        .into_iter()
        .map(|(name, snapshot)| {
            snapshot
                .to_data()
                .map(|data| (name.clone(), data))
                .map_err(|e| weights_error(path, format!("tensor {name}: {e:?}")))
        })
        .collect()
}

/// A scripted model's state dict less what the model derives rather than learns: the causal
/// `attn_mask` (open_clip's non-persistent buffer, persistent once traced) and the
/// `input_resolution`, `context_length` and `vocab_size` that OpenAI's files carry as tensors (the
/// architecture is read from the weights' shapes, which say the same).
fn without_derived(mut tensors: BTreeMap<String, TensorData>) -> BTreeMap<String, TensorData> {
    tensors.retain(|key, _| {
        !(key == "attn_mask"
            || key.ends_with(".attn_mask")
            || matches!(
                key.as_str(),
                "input_resolution" | "context_length" | "vocab_size"
            ))
    });
    tensors
}

/// `{"state_dict": {...}}` checkpoints come out flattened as `state_dict.…`; DDP adds `module.`.
fn unwrap_prefixes(tensors: BTreeMap<String, TensorData>) -> BTreeMap<String, TensorData> {
    let nested = tensors.keys().any(|k| k.starts_with("state_dict."));
    let tensors: BTreeMap<_, _> = if nested {
        tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("state_dict.").map(|k| (k.to_string(), v)))
            .collect()
    } else {
        tensors
    };
    if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("module.")) {
        tensors
            .into_iter()
            .map(|(k, v)| (k["module.".len()..].to_string(), v))
            .collect()
    } else {
        tensors
    }
}

// ---------------------------------------------------------------------------------------------
// CPU-side tensor edits used by the key mapping

fn to_f32(data: TensorData) -> TensorData {
    data.convert_dtype(DType::F32)
}

fn values(data: &TensorData) -> Vec<f32> {
    data.to_vec::<f32>().unwrap_or_default()
}

pub(crate) fn transpose(data: TensorData) -> TensorData {
    let data = to_f32(data);
    let shape = data.shape.to_vec();
    if shape.len() != 2 {
        return data;
    }
    let (rows, cols) = (shape[0], shape[1]);
    let v = values(&data);
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    TensorData::new(t, [cols, rows])
}

/// A patch embedding between the two ways of writing it: NaFlex's `nn.Linear` over flattened
/// patches, `[width, patch·patch·3]` with inputs in (row, column, channel) order, and a
/// convolution's `[width, 3, patch, patch]` (`to_conv`), or back. `None` for a shape that is
/// neither.
pub(crate) fn patch_weight(data: TensorData, to_conv: bool) -> Option<TensorData> {
    let shape = data.shape.to_vec();
    let (width, patch) = match (to_conv, shape.as_slice()) {
        (true, &[width, inputs]) => {
            let patch = ((inputs / 3) as f64).sqrt().round() as usize;
            (patch * patch * 3 == inputs && patch > 0).then_some((width, patch))?
        }
        (false, &[width, 3, p, q]) if p == q => (width, p),
        _ => return None,
    };
    let v = values(&to_f32(data));
    let mut out = vec![0f32; v.len()];
    let per = 3 * patch * patch;
    for w in 0..width {
        for y in 0..patch {
            for x in 0..patch {
                for c in 0..3 {
                    let linear = w * per + (y * patch + x) * 3 + c;
                    let conv = w * per + (c * patch + y) * patch + x;
                    if to_conv {
                        out[conv] = v[linear];
                    } else {
                        out[linear] = v[conv];
                    }
                }
            }
        }
    }
    Some(if to_conv {
        TensorData::new(out, [width, 3, patch, patch])
    } else {
        TensorData::new(out, [width, per])
    })
}

fn concat_rows(parts: Vec<TensorData>) -> TensorData {
    let mut shape = parts[0].shape.to_vec();
    shape[0] = parts.iter().map(|p| p.shape[0]).sum();
    let v: Vec<f32> = parts.into_iter().flat_map(|p| values(&to_f32(p))).collect();
    TensorData::new(v, shape)
}

/// Rows `from..to` of a matrix or vector (a slice of a packed projection).
fn rows(data: &TensorData, from: usize, to: usize) -> TensorData {
    let mut shape = data.shape.to_vec();
    let row: usize = shape[1..].iter().product();
    let v = values(&to_f32(data.clone()));
    shape[0] = to - from;
    TensorData::new(v[from * row..to * row].to_vec(), shape)
}

fn reshape(data: TensorData, shape: Vec<usize>) -> TensorData {
    let data = to_f32(data);
    TensorData::new(values(&data), shape)
}

// ---------------------------------------------------------------------------------------------
// Hugging Face → open_clip names

/// The two layouts' names, `(open_clip, transformers)`: one table read both ways, by the importer
/// here and by the exporter (`crate::export`).
/// Prefixes of the transformer blocks.
pub(crate) const BLOCK_PREFIXES: [(&str, &str); 2] = [
    (
        "visual.transformer.resblocks.",
        "vision_model.encoder.layers.",
    ),
    ("transformer.resblocks.", "text_model.encoder.layers."),
];
/// Parts inside a block (q, k and v are packed in open_clip and handled apart).
pub(crate) const BLOCK_PARTS: [(&str, &str); 5] = [
    ("attn.out_proj", "self_attn.out_proj"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
];
/// Tensors that only change name.
pub(crate) const SAME_TENSORS: [(&str, &str); 6] = [
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
    ),
    (
        "visual.class_embedding",
        "vision_model.embeddings.class_embedding",
    ),
    (
        "visual.conv1.weight",
        "vision_model.embeddings.patch_embedding.weight",
    ),
    (
        "visual.positional_embedding",
        "vision_model.embeddings.position_embedding.weight",
    ),
    ("logit_scale", "logit_scale"),
];
/// Projections, stored `[in, out]` by open_clip and `[out, in]` by transformers.
pub(crate) const PROJECTIONS: [(&str, &str); 2] = [
    ("visual.proj", "visual_projection.weight"),
    ("text_projection", "text_projection.weight"),
];
/// The LayerNorms outside the blocks (a prefix of their weight and bias).
pub(crate) const NORMS: [(&str, &str); 3] = [
    ("ln_final", "text_model.final_layer_norm"),
    ("visual.ln_pre", "vision_model.pre_layrnorm"),
    ("visual.ln_post", "vision_model.post_layernorm"),
];

/// `name` with each pair's one side replaced by the other (`to_hf`: open_clip → transformers).
pub(crate) fn rename(name: &str, pairs: &[(&str, &str)], to_hf: bool) -> String {
    pairs.iter().fold(name.to_string(), |n, (oc, hf)| {
        if to_hf {
            n.replace(oc, hf)
        } else {
            n.replace(hf, oc)
        }
    })
}

/// The entry of `pairs` whose one side is `name` (`hf`: the transformers side), and its other side.
pub(crate) fn counterpart<'a>(
    name: &str,
    pairs: &[(&'a str, &'a str)],
    hf: bool,
) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(oc, h)| if hf { *h == name } else { *oc == name })
        .map(|(oc, h)| if hf { *oc } else { *h })
}

/// Tensors under open_clip names, and for each renamed key the key(s) of the file it came from.
type Renamed = (BTreeMap<String, TensorData>, HashMap<String, String>);

/// Renames an HF state dict to open_clip's layout: q/k/v packed, projections transposed.
fn hf_to_open_clip(
    path: &Path,
    tensors: BTreeMap<String, TensorData>,
) -> Result<Renamed, ClipError> {
    let mut out = BTreeMap::new();
    let mut source = HashMap::new();
    let mut qkv: BTreeMap<String, [Option<TensorData>; 3]> = BTreeMap::new();
    for (key, data) in tensors {
        if key.ends_with("position_ids") {
            continue;
        }
        let block = BLOCK_PREFIXES
            .iter()
            .find_map(|(oc, hf)| key.strip_prefix(hf).map(|rest| (*oc, rest)));
        if let Some((prefix, rest)) = block {
            let mut parts = rest.splitn(2, '.');
            let (layer, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let slot = [
                "self_attn.q_proj.",
                "self_attn.k_proj.",
                "self_attn.v_proj.",
            ]
            .iter()
            .position(|p| tail.starts_with(p));
            if let Some(slot) = slot {
                let kind = if tail.ends_with("weight") {
                    "weight"
                } else {
                    "bias"
                };
                let packed = format!("{prefix}{layer}.attn.in_proj_{kind}");
                qkv.entry(packed).or_default()[slot] = Some(data);
                continue;
            }
            let new = format!("{prefix}{layer}.{}", rename(tail, &BLOCK_PARTS, false));
            source.insert(new.clone(), key.clone());
            out.insert(new, data);
            continue;
        }
        let (new, data) = if let Some(name) = counterpart(&key, &SAME_TENSORS, true) {
            (name.to_string(), data)
        } else if let Some(name) = counterpart(&key, &PROJECTIONS, true) {
            (name.to_string(), transpose(data))
        } else {
            let renamed = rename(&key, &NORMS, false);
            if renamed == key {
                return Err(ClipError::UnexpectedKey {
                    path: path.to_path_buf(),
                    key,
                    layout: Layout::HuggingFace.name(),
                });
            }
            (renamed, data)
        };
        source.insert(new.clone(), key.clone());
        out.insert(new, data);
    }
    for (packed, parts) in qkv {
        let hf = |slot: &str| {
            let prefix = BLOCK_PREFIXES
                .iter()
                .find_map(|(oc, hf)| packed.strip_prefix(oc).map(|rest| format!("{hf}{rest}")))
                .unwrap_or_else(|| packed.clone());
            prefix.replace("attn.in_proj_", &format!("self_attn.{slot}_proj."))
        };
        let [Some(q), Some(k), Some(v)] = parts else {
            let missing = ["q", "k", "v"]
                .iter()
                .zip(&parts)
                .find(|(_, p)| p.is_none())
                .map(|(s, _)| hf(s))
                .unwrap_or_default();
            return Err(ClipError::MissingKey {
                path: path.to_path_buf(),
                key: missing,
            });
        };
        let shapes: Vec<Vec<usize>> = [&q, &k, &v].iter().map(|t| t.shape.to_vec()).collect();
        if shapes[0] != shapes[1] || shapes[0] != shapes[2] {
            return Err(ClipError::Shape {
                path: path.to_path_buf(),
                key: hf("k"),
                expected: shapes[0].clone(),
                found: shapes[1].clone(),
            });
        }
        source.insert(packed.clone(), format!("{} (with k_proj, v_proj)", hf("q")));
        out.insert(packed, concat_rows(vec![q, k, v]));
    }
    Ok((out, source))
}

/// Takes the tensors of transformers' `SiglipModel` that `CLIPModel` has no counterpart for out of
/// `tensors`, renamed to the open_clip names [`module_path`] reads: the patch convolution's bias, the
/// attention-pooling head (`probe`, a packed `nn.MultiheadAttention` split into the query and the
/// key-value projections, `layernorm`, `mlp`), the text `head` (the biased projection) and
/// `logit_bias`. A CLIP state dict has none of them; the rest goes through [`hf_to_open_clip`].
fn take_hf_siglip_heads(
    path: &Path,
    tensors: &mut BTreeMap<String, TensorData>,
) -> Result<Renamed, ClipError> {
    const RENAMED: [(&str, &str); 11] = [
        (
            "vision_model.embeddings.patch_embedding.bias",
            "visual.conv1.bias",
        ),
        ("vision_model.head.probe", "visual.attn_pool.latent"),
        (
            "vision_model.head.attention.out_proj.weight",
            "visual.attn_pool.proj.weight",
        ),
        (
            "vision_model.head.attention.out_proj.bias",
            "visual.attn_pool.proj.bias",
        ),
        (
            "vision_model.head.layernorm.weight",
            "visual.attn_pool.norm.weight",
        ),
        (
            "vision_model.head.layernorm.bias",
            "visual.attn_pool.norm.bias",
        ),
        (
            "vision_model.head.mlp.fc1.weight",
            "visual.attn_pool.mlp.c_fc.weight",
        ),
        (
            "vision_model.head.mlp.fc1.bias",
            "visual.attn_pool.mlp.c_fc.bias",
        ),
        (
            "vision_model.head.mlp.fc2.weight",
            "visual.attn_pool.mlp.c_proj.weight",
        ),
        (
            "vision_model.head.mlp.fc2.bias",
            "visual.attn_pool.mlp.c_proj.bias",
        ),
        ("text_model.head.bias", "text_projection.bias"),
    ];
    let (mut out, mut source) = (BTreeMap::new(), HashMap::new());
    // Siglip2Model (NaFlex) embeds patches with a Linear: the same weights as a convolution's
    const PATCH: &str = "vision_model.embeddings.patch_embedding.weight";
    if let Some(linear) = tensors.remove(PATCH) {
        let conv = if linear.shape.len() == 2 {
            let shape = linear.shape.to_vec();
            patch_weight(linear, true).ok_or_else(|| ClipError::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "{PATCH} has shape {shape:?}: a NaFlex patch embedding needs patch·patch·3 inputs"
                ),
            })?
        } else {
            linear
        };
        tensors.insert(PATCH.to_string(), conv);
    }
    for (hf, oc) in RENAMED {
        if let Some(data) = tensors.remove(hf) {
            out.insert(oc.to_string(), data);
            source.insert(oc.to_string(), hf.to_string());
        }
    }
    for key in ["logit_bias"] {
        if let Some(data) = tensors.remove(key) {
            out.insert(key.to_string(), data);
        }
    }
    if let Some(head) = tensors.remove("text_model.head.weight") {
        out.insert("text_projection".into(), transpose(head));
        source.insert("text_projection".into(), "text_model.head.weight".into());
    }
    // nn.MultiheadAttention packs q, k, v; timm's head (ours) projects the query apart
    for kind in ["weight", "bias"] {
        let key = format!("vision_model.head.attention.in_proj_{kind}");
        let Some(packed) = tensors.remove(&key) else {
            continue;
        };
        let stacked = packed.shape.first().copied().unwrap_or(0);
        let width = stacked / 3;
        if packed.shape.len() != if kind == "weight" { 2 } else { 1 }
            || stacked != 3 * width
            || width == 0
        {
            return Err(ClipError::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "{key} has shape {:?}: the query, key and value projections stacked need 3·width \
                     rows{}",
                    packed.shape.to_vec(),
                    if kind == "weight" { " of width columns" } else { "" }
                ),
            });
        }
        for (name, from, to) in [("q", 0, width), ("kv", width, 3 * width)] {
            let new = format!("visual.attn_pool.{name}.{kind}");
            out.insert(new.clone(), rows(&packed, from, to));
            source.insert(new, key.clone());
        }
    }
    Ok((out, source))
}

/// timm's SigLIP trunk prefixes and this library's, `(timm, ours)`.
const TIMM_TRUNK: [(&str, &str); 5] = [
    ("visual.trunk.patch_embed.proj.", "visual.conv1."),
    ("visual.trunk.pos_embed", "visual.positional_embedding"),
    ("visual.trunk.blocks.", "visual.transformer.resblocks."),
    ("visual.trunk.norm.", "visual.ln_post."),
    ("visual.trunk.attn_pool.", "visual.attn_pool."),
];
/// Names inside timm's blocks and pooling head, `(timm, ours)`.
const TIMM_BLOCK: [(&str, &str); 7] = [
    (".norm1.", ".ln_1."),
    (".norm2.", ".ln_2."),
    (".attn.qkv.weight", ".attn.in_proj_weight"),
    (".attn.qkv.bias", ".attn.in_proj_bias"),
    (".attn.proj.", ".attn.out_proj."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
];
/// The text tower's keys, which open_clip's custom text tower (SigLIP's) puts under `text.`.
const CUSTOM_TEXT_KEYS: [&str; 4] = [
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
];

/// open_clip's SigLIP keys renamed to the ones [`module_path`] reads: the timm image trunk
/// (`visual.trunk.blocks.N.attn.qkv`, …) to this library's ViT names, the custom text tower's `text.`
/// prefix dropped, its `nn.Linear` projection turned into the `[in, out]` parameter form. Other state
/// dicts pass through unchanged.
fn timm_siglip_to_open_clip(tensors: BTreeMap<String, TensorData>) -> Renamed {
    let mut sources = HashMap::new();
    let renamed = tensors
        .into_iter()
        .map(|(key, data)| {
            let mut new = key.clone();
            let mut data = data;
            if let Some((from, to)) = TIMM_TRUNK.iter().find(|(from, _)| key.starts_with(from)) {
                new = format!("{to}{}", &key[from.len()..]);
                if from.ends_with("blocks.") || from.ends_with("attn_pool.") {
                    new = TIMM_BLOCK.iter().fold(new, |n, (a, b)| n.replace(a, b));
                }
            } else if key == "text.text_projection.weight" {
                new = "text_projection".into();
                data = transpose(data);
            } else if let Some(rest) = key.strip_prefix("text.").filter(|rest| {
                rest.starts_with("text_projection.")
                    || CUSTOM_TEXT_KEYS.iter().any(|k| rest.starts_with(k))
            }) {
                // the inverse of `open_clip_siglip_layout`: only the text tower's own keys
                new = rest.to_string();
            }
            if new != key {
                sources.insert(new.clone(), key);
            }
            (new, data)
        })
        .collect();
    (renamed, sources)
}

/// The inverse of [`timm_siglip_to_open_clip`]: a SigLIP model's open_clip state dict as open_clip
/// writes it (timm's trunk names and shapes, the text tower under `text.` with an `nn.Linear`
/// projection).
pub(crate) fn open_clip_siglip_layout(
    tensors: BTreeMap<String, TensorData>,
) -> BTreeMap<String, TensorData> {
    tensors
        .into_iter()
        .map(|(key, data)| {
            if let Some((timm, ours)) = TIMM_TRUNK.iter().find(|(_, ours)| key.starts_with(ours)) {
                let mut new = format!("{timm}{}", &key[ours.len()..]);
                if ours.ends_with("resblocks.") || ours.ends_with("attn_pool.") {
                    new = TIMM_BLOCK.iter().fold(new, |n, (a, b)| n.replace(b, a));
                }
                // timm keeps the batch (and query) axes: pos_embed [1, N, C], latent [1, 1, C]
                let data = match new.as_str() {
                    "visual.trunk.pos_embed" => {
                        let shape = [1, data.shape[0], data.shape[1]].to_vec();
                        reshape(data, shape)
                    }
                    "visual.trunk.attn_pool.latent" => {
                        let shape = [1, 1, data.shape[0]].to_vec();
                        reshape(data, shape)
                    }
                    _ => data,
                };
                (new, data)
            } else if key == "text_projection" {
                ("text.text_projection.weight".into(), transpose(data))
            } else if key == "text_projection.bias" {
                ("text.text_projection.bias".into(), data)
            } else if CUSTOM_TEXT_KEYS.iter().any(|k| key.starts_with(k)) {
                (format!("text.{key}"), data)
            } else {
                (key, data)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// open_clip names ↔ module paths

/// Does the tensor under this open_clip key need a transpose to become a burn `Linear` weight?
fn is_linear_weight(key: &str) -> bool {
    [
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "mlp.c_fc.weight",
        "mlp.c_proj.weight",
        "attnpool.q_proj.weight",
        "attnpool.k_proj.weight",
        "attnpool.v_proj.weight",
        "attnpool.c_proj.weight",
        "attn_pool.q.weight",
        "attn_pool.kv.weight",
        "attn_pool.proj.weight",
    ]
    .iter()
    .any(|s| key.ends_with(s))
}

/// Is the module that owns this key a LayerNorm or BatchNorm (whose weight/bias burn calls gamma/beta)?
fn is_norm(owner: &str) -> bool {
    let last = owner.rsplit('.').next().unwrap_or("");
    // `norm`: the LayerNorm of SigLIP's pooling head (timm's name)
    last.starts_with("ln_")
        || last.starts_with("bn")
        || last == "norm"
        || owner.ends_with("downsample.1")
}

const TEXT_ROOTS: [&str; 4] = [
    "token_embedding.",
    "positional_embedding",
    "ln_final.",
    "transformer.",
];

/// Module path for an open_clip key, or None when the key is not a parameter of ours.
pub(crate) fn module_path(key: &str) -> Option<String> {
    match key {
        "logit_scale" => return Some("logit_scale.value".into()),
        "logit_bias" => return Some("logit_bias".into()),
        "text_projection" => return Some("text_projection.weight".into()),
        "visual.proj" => return Some("visual_projection.weight".into()),
        _ => {}
    }
    if key.ends_with("num_batches_tracked") {
        return None;
    }
    let mut path = if TEXT_ROOTS.iter().any(|r| key.starts_with(r)) {
        format!("text.{key}")
    } else if key.starts_with("visual.") || key.starts_with("text_projection.") {
        key.to_string()
    } else {
        return None;
    };
    path = path
        .replace("attn.in_proj_weight", "attn.in_proj.weight")
        .replace("attn.in_proj_bias", "attn.in_proj.bias")
        .replace("downsample.0.", "downsample.conv.")
        .replace("downsample.1.", "downsample.bn.");
    // layer-scale gains are bare parameters here (`ls_1`), `LayerScale` modules there (`ls_1.gamma`)
    for ls in [".ls_1", ".ls_2"] {
        if let Some(base) = path.strip_suffix(&format!("{ls}.gamma")) {
            return Some(format!("{base}{ls}"));
        }
    }
    if let Some((owner, leaf)) = key.rsplit_once('.') {
        if is_norm(owner) {
            let new_leaf = match leaf {
                "weight" => "gamma",
                "bias" => "beta",
                other => other,
            };
            if let Some(base) = path.rsplit_once('.').map(|(b, _)| b.to_string()) {
                path = format!("{base}.{new_leaf}");
            }
        }
    }
    Some(path)
}

/// open_clip key for a module path (the inverse of [`module_path`]).
pub(crate) fn open_clip_key(path: &str) -> String {
    match path {
        "logit_scale.value" => return "logit_scale".into(),
        "logit_bias" => return "logit_bias".into(),
        "text_projection.weight" => return "text_projection".into(),
        "visual_projection.weight" => return "visual.proj".into(),
        _ => {}
    }
    let key = path.strip_prefix("text.").unwrap_or(path);
    if key.ends_with(".ls_1") || key.ends_with(".ls_2") {
        return format!("{key}.gamma");
    }
    let key = key
        .replace("attn.in_proj.weight", "attn.in_proj_weight")
        .replace("attn.in_proj.bias", "attn.in_proj_bias")
        .replace("downsample.conv.", "downsample.0.")
        .replace("downsample.bn.", "downsample.1.");
    if let Some(base) = key.strip_suffix(".gamma") {
        format!("{base}.weight")
    } else if let Some(base) = key.strip_suffix(".beta") {
        format!("{base}.bias")
    } else {
        key
    }
}

/// Loads a state dict (either layout) into `model`. Every parameter must be present with the right
/// shape and every tensor must be used, otherwise nothing is changed and the error names the key.
pub fn load_state_dict<B: Backend>(
    model: &mut Clip<B>,
    sd: &StateDict,
) -> Result<Layout, ClipError> {
    load_state_dict_owned(model, sd.clone())
}

/// [`load_state_dict`] consuming the state dict: each tensor's buffer moves into the model instead
/// of being copied first (one copy of the weights less at the peak of loading).
pub(crate) fn load_state_dict_owned<B: Backend>(
    model: &mut Clip<B>,
    mut sd: StateDict,
) -> Result<Layout, ClipError> {
    let layout = sd.layout();
    // the float dtype the model runs in: its device's (crate::precision), read without initializing
    // its lazily created parameters
    let mut first = FirstDevice::<B>(None);
    model.visit(&mut first);
    let float = first.0.map_or(DType::F32, |d| {
        get_device_settings::<B>(&d).float_dtype.into()
    });
    let (tensors, source) = match layout {
        Layout::HuggingFace => {
            let mut tensors = std::mem::take(&mut sd.tensors);
            let (siglip, siglip_source) = take_hf_siglip_heads(&sd.path, &mut tensors)?;
            let (mut renamed, mut source) = hf_to_open_clip(&sd.path, tensors)?;
            renamed.extend(siglip);
            source.extend(siglip_source);
            (renamed, source)
        }
        Layout::OpenClip => timm_siglip_to_open_clip(std::mem::take(&mut sd.tensors)),
    };
    let source_of = |key: &str| source.get(key).cloned().unwrap_or_else(|| key.to_string());
    let expected = parameter_shapes(model);
    let mut snapshots = Vec::with_capacity(expected.len());
    let mut seen = std::collections::BTreeSet::new();
    for (key, data) in tensors {
        let Some(path) = module_path(&key).filter(|p| expected.contains_key(p)) else {
            if key.ends_with("num_batches_tracked") {
                continue;
            }
            return Err(ClipError::UnexpectedKey {
                path: sd.path.clone(),
                key: source_of(&key),
                layout: layout.name(),
            });
        };
        let want = &expected[&path];
        let data = if is_linear_weight(&key) {
            transpose(data)
        } else {
            to_f32(data)
        };
        // rank-0 `logit_scale`, `[1]` here
        let data = if data.shape.iter().product::<usize>() == want.iter().product::<usize>()
            && data.shape.len() != want.len()
        {
            reshape(data, want.clone())
        } else {
            data
        };
        if data.shape.to_vec() != *want {
            let (expected, found) = if is_linear_weight(&key) {
                // report both in the file's own [out, in] convention
                (
                    want.iter().rev().copied().collect(),
                    data.shape.iter().rev().copied().collect(),
                )
            } else {
                (want.clone(), data.shape.to_vec())
            };
            return Err(ClipError::Shape {
                path: sd.path.clone(),
                key: source_of(&key),
                expected,
                found,
            });
        }
        seen.insert(path.clone());
        let stack: Vec<String> = path.split('.').map(str::to_string).collect();
        let data = if data.dtype.is_float() && data.dtype != float {
            data.convert_dtype(float)
        } else {
            data
        };
        snapshots.push(moving_snapshot(data, stack));
    }
    if let Some(missing) = expected.keys().find(|p| !seen.contains(*p)) {
        let key = open_clip_key(missing);
        let key = match layout {
            Layout::OpenClip => key,
            Layout::HuggingFace => format!("{key} (open_clip name; its Hugging Face counterpart)"),
        };
        return Err(ClipError::MissingKey {
            path: sd.path.clone(),
            key,
        });
    }
    let result = model.apply(snapshots, None, None, true);
    if let Some(error) = result.errors.first() {
        return Err(weights_error(&sd.path, format!("{error:?}")));
    }
    Ok(layout)
}

/// A snapshot whose data moves into the model when applied. `TensorSnapshot::from_data` clones its
/// data on every read, so all the weights would exist twice until `apply` returns.
fn moving_snapshot(data: TensorData, path: Vec<String>) -> TensorSnapshot {
    let (dtype, shape) = (data.dtype, data.shape.clone());
    let slot = RefCell::new(Some(data));
    let take = move || {
        slot.borrow_mut().take().ok_or_else(|| {
            TensorSnapshotError::DataError("read twice: already moved into the model".into())
        })
    };
    TensorSnapshot::from_closure(Rc::new(take), dtype, shape, path, vec![], ParamId::new())
}

/// Every parameter's path (as burn-store names it: enum variants skipped) and shape, read without
/// materializing lazily initialized parameters: a snapshot of the freshly built model would fill all
/// of them with random values first, one more copy of the weights at the peak of loading.
fn parameter_shapes<B: Backend>(model: &Clip<B>) -> BTreeMap<String, Vec<usize>> {
    let mut shapes = ParameterShapes::default();
    model.visit(&mut shapes);
    shapes.shapes
}

/// The device of a module's first float parameter, read without initializing it.
struct FirstDevice<B: Backend>(Option<B::Device>);

impl<B: Backend> ModuleVisitor<B> for FirstDevice<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.0.is_none() {
            self.0 = Some(param.lazy_device());
        }
    }
}

#[derive(Default)]
struct ParameterShapes {
    path: Vec<String>,
    /// whether each entered module added a path segment (enum variants do not)
    named: Vec<bool>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ParameterShapes {
    fn add(&mut self, shape: burn::tensor::Shape) {
        self.shapes.insert(self.path.join("."), shape.to_vec());
    }
}

impl<B: Backend> ModuleVisitor<B> for ParameterShapes {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        let named = !container_type.starts_with("Enum:");
        if named {
            self.path.push(name.to_string());
        }
        self.named.push(named);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        if self.named.pop() == Some(true) {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.add(param.lazy_shape());
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.add(param.lazy_shape());
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.add(param.lazy_shape());
    }
}

/// The model's parameters under open_clip's names and layouts, as f32 tensors.
pub fn open_clip_state_dict<B: Backend>(
    model: &Clip<B>,
) -> Result<BTreeMap<String, TensorData>, ClipError> {
    let mut out = BTreeMap::new();
    for snapshot in model.collect(None, None, true) {
        let path = snapshot.full_path();
        let key = open_clip_key(&path);
        let data = snapshot
            .to_data()
            .map_err(|e| ClipError::Input(format!("reading parameter {path}: {e:?}")))?;
        let data = if is_linear_weight(&key) {
            transpose(data)
        } else if key == "logit_scale" {
            TensorData::new(values(&to_f32(data)), Vec::<usize>::new())
        } else {
            to_f32(data)
        };
        out.insert(key, data);
    }
    Ok(out)
}

/// Writes the model as an open_clip-layout safetensors file (f32), atomically: the file appears
/// complete or not at all.
pub fn save_open_clip_safetensors<B: Backend>(
    model: &Clip<B>,
    path: impl AsRef<Path>,
) -> Result<(), ClipError> {
    write_safetensors(path.as_ref(), &open_clip_state_dict(model)?)
}

/// Writes tensors (f32, f16, bf16, f64 or i64) to a safetensors file, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
) -> Result<(), ClipError> {
    let write_error = |message: String| ClipError::Write {
        path: path.to_path_buf(),
        message,
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, v)| {
            let dtype = match v.dtype {
                DType::F32 => Dtype::F32,
                DType::F16 => Dtype::F16,
                DType::BF16 => Dtype::BF16,
                DType::F64 => Dtype::F64,
                DType::I64 => Dtype::I64,
                other => {
                    return Err(write_error(format!(
                        "{k}: dtype {other:?} cannot be written"
                    )))
                }
            };
            safetensors::tensor::TensorView::new(dtype, v.shape.to_vec(), v.as_bytes())
                .map(|view| (k.clone(), view))
                .map_err(|e| write_error(format!("{k}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| write_error(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` crash-safely ([`crate::durable::write_atomic`]: a temporary sibling,
/// fsync, rename, directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClipError> {
    crate::durable::write_atomic(path, bytes).map_err(|e| ClipError::Write {
        path: path.to_path_buf(),
        message: crate::durable::describe(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_mapping_round_trips() {
        for key in [
            "logit_scale",
            "text_projection",
            "visual.proj",
            "token_embedding.weight",
            "positional_embedding",
            "ln_final.weight",
            "ln_final.bias",
            "transformer.resblocks.3.attn.in_proj_weight",
            "transformer.resblocks.3.attn.in_proj_bias",
            "transformer.resblocks.3.ln_2.bias",
            "visual.transformer.resblocks.0.mlp.c_fc.weight",
            "visual.ln_pre.weight",
            "visual.bn3.running_var",
            "visual.layer2.0.downsample.0.weight",
            "visual.layer2.0.downsample.1.weight",
            "visual.layer2.0.bn1.bias",
            "visual.attnpool.c_proj.weight",
        ] {
            let path = module_path(key).unwrap();
            assert_eq!(open_clip_key(&path), key, "via {path}");
        }
        assert_eq!(
            module_path("visual.ln_pre.weight").unwrap(),
            "visual.ln_pre.gamma"
        );
        assert_eq!(
            module_path("visual.layer2.0.downsample.1.weight").unwrap(),
            "visual.layer2.0.downsample.bn.gamma"
        );
        assert_eq!(module_path("visual.bn1.num_batches_tracked"), None);
    }
}
