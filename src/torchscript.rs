//! TorchScript archives (`torch.jit.save`, OpenAI's `clip.load` files) read as data: the module tree in
//! `data.pkl` is unpickled by a small pickle machine that knows only what those files hold, and the
//! state dict is gathered from it as `torch.jit.load(f).state_dict()` gives it. Nothing is executed: the
//! `code/` directory is read only for each class's `__parameters__` and `__buffers__` lists, and a
//! pickle that names any global outside the allowed set is refused by name.
//!
//! Written here rather than taken from a crate: burn-store's PyTorch reader and `serde-pickle` read
//! state-dict pickles but not module objects (`__torch__.*` classes built with `NEWOBJ` and `BUILD`),
//! and TorchScript's layout (a `code/` tree beside the pickle) is its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use burn::tensor::{DType, TensorData};

/// Why a TorchScript archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TorchScriptError {
    /// The zip container itself.
    #[error("zip archive: {0}")]
    Zip(String),
    /// A pickle opcode outside the subset TorchScript's `data.pkl` uses, or a malformed pickle.
    #[error("data.pkl at byte {offset}: {message}")]
    Pickle {
        /// Byte offset of the opcode in `data.pkl`.
        offset: usize,
        /// What is wrong there.
        message: String,
    },
    /// A global the reader does not allow (it would have to run code to build it).
    #[error("data.pkl names the global {0}, which a TorchScript module tree never needs; refused, nothing executed")]
    Global(String),
    /// A tensor whose storage is missing, too small or of an unknown type.
    #[error("tensor {key}: {message}")]
    Tensor {
        /// The state-dict key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The module tree is not what `torch.jit.save` writes.
    #[error("{0}")]
    Layout(String),
}

type Result<T> = std::result::Result<T, TorchScriptError>;

/// Whether `path` is a zip holding a TorchScript module (`<name>/data.pkl` beside `<name>/constants.pkl`
/// or a `<name>/code/` tree), as opposed to a `torch.save` state dict.
pub fn is_torchscript(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(zip) = zip::ZipArchive::new(file) else {
        return false;
    };
    let names: Vec<&str> = zip.file_names().collect();
    names.iter().any(|n| n.ends_with("constants.pkl")) || names.iter().any(|n| n.contains("/code/"))
}

/// The state dict of the TorchScript module in `path`: each parameter and buffer by its dotted path,
/// with its dtype and shape as stored (fp16 stays fp16).
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    let file = std::fs::File::open(path).map_err(|e| TorchScriptError::Zip(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| TorchScriptError::Zip(e.to_string()))?;
    let pickle_name = zip
        .file_names()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| TorchScriptError::Layout("no data.pkl in the archive".into()))?;
    let root = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or("")
        .to_string();
    if let Ok(order) = read_entry(&mut zip, &format!("{root}byteorder"), 16) {
        if order != b"little" {
            return Err(TorchScriptError::Layout(format!(
                "byteorder {:?}: only little-endian archives are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pickle = read_entry(&mut zip, &pickle_name, 1 << 30)?;
    let tree = Unpickler::new(&pickle).run()?;
    let classes = ClassMembers::read(&mut zip, &root);
    let mut refs = BTreeMap::new();
    tree.collect(tree.root, "", &classes, &mut refs, 0)?;
    let mut out = BTreeMap::new();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (key, tensor) in refs {
        let storage = tree.storage(&tensor);
        if !storages.contains_key(&storage.key) {
            let limit = storage.numel.saturating_mul(storage.dtype.size()) as u64;
            let bytes = read_entry(&mut zip, &format!("{root}data/{}", storage.key), limit)
                .map_err(|e| TorchScriptError::Tensor {
                    key: key.clone(),
                    message: format!("storage data/{}: {e}", storage.key),
                })?;
            storages.insert(storage.key.clone(), bytes);
        }
        let data = gather(&key, &tensor, storage, &storages[&storage.key])?;
        out.insert(key, data);
    }
    Ok(out)
}

/// The bytes of one archive entry, refusing entries larger than `limit` before reading them.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut entry = zip
        .by_name(name)
        .map_err(|e| TorchScriptError::Zip(format!("{name}: {e}")))?;
    if entry.size() > limit {
        return Err(TorchScriptError::Zip(format!(
            "{name} holds {} bytes, more than the {limit} expected",
            entry.size()
        )));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| TorchScriptError::Zip(format!("{name}: {e}")))?;
    Ok(bytes)
}

/// For each TorchScript class (`__torch__.a.b.Name`), the attributes `state_dict()` returns: its
/// `__parameters__` and `__buffers__`, read from the class definitions under `code/` as text.
struct ClassMembers(HashMap<String, HashSet<String>>);

impl ClassMembers {
    fn read<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, root: &str) -> Self {
        let prefix = format!("{root}code/");
        let files: Vec<String> = zip
            .file_names()
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".py"))
            .map(str::to_string)
            .collect();
        let mut classes = HashMap::new();
        for name in files {
            let Ok(bytes) = read_entry(zip, &name, 64 << 20) else {
                continue;
            };
            // code/__torch__/a/b.py defines classes __torch__.a.b.<Name>
            let module = name[prefix.len()..]
                .trim_end_matches(".py")
                .replace('/', ".");
            let text = String::from_utf8_lossy(&bytes);
            let mut current: Option<String> = None;
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("class ") {
                    let class = rest.split(['(', ':']).next().unwrap_or("").trim();
                    current = Some(format!("{module}.{class}"));
                } else if let Some(class) = &current {
                    let line = line.trim();
                    for list in ["__parameters__", "__buffers__"] {
                        if let Some(items) = line.strip_prefix(list) {
                            let members: &mut HashSet<String> =
                                classes.entry(class.clone()).or_default();
                            members.extend(
                                items
                                    .split(['"', '\''])
                                    .skip(1)
                                    .step_by(2)
                                    .map(str::to_string),
                            );
                        }
                    }
                }
            }
        }
        Self(classes)
    }

    /// Whether attribute `name` of an object of `class` belongs in the state dict. A class without a
    /// definition (an archive without `code/`) keeps every tensor attribute.
    fn keeps(&self, class: &str, name: &str) -> bool {
        self.0.get(class).is_none_or(|m| m.contains(name))
    }
}

/// A storage's element type, from its class name (`torch.HalfStorage`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Elem {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::F64 => DType::F64,
            Self::I64 => DType::I64,
            Self::I32 => DType::I32,
            Self::I16 => DType::I16,
            Self::I8 => DType::I8,
            Self::U8 => DType::U8,
            Self::Bool => DType::Bool(burn::tensor::BoolStore::Native),
        }
    }
}

#[derive(Clone, Debug)]
struct Storage {
    dtype: Elem,
    key: String,
    numel: usize,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Index of a value in the unpickler's arena: the memo and containers share values by index, as
/// Python's pickle shares objects by reference.
type Id = usize;

#[derive(Clone, Debug)]
enum Value {
    /// `None`, booleans, floats and bytes: read, never looked into.
    Opaque,
    Int(i64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    /// An allowed global: `(module, name)`.
    Global(String, String),
    /// An instance of a `__torch__` class, with the state `BUILD` gave it.
    Object {
        class: String,
        state: Option<Id>,
    },
    Storage(usize),
    Tensor(TensorRef),
}

/// The unpickled tree: an arena of values, the storages met, and the root.
struct Tree {
    values: Vec<Value>,
    storages: Vec<Storage>,
    root: Id,
}

impl Tree {
    fn storage(&self, tensor: &TensorRef) -> &Storage {
        &self.storages[tensor.storage]
    }

    /// Walks a module object: its tensor attributes that `state_dict()` keeps, then its sub-modules.
    fn collect(
        &self,
        id: Id,
        prefix: &str,
        classes: &ClassMembers,
        out: &mut BTreeMap<String, TensorRef>,
        depth: usize,
    ) -> Result<()> {
        if depth > 256 {
            return Err(TorchScriptError::Layout(
                "the module tree is nested more than 256 levels deep".into(),
            ));
        }
        let Value::Object { class, state } = &self.values[id] else {
            return Err(TorchScriptError::Layout(format!(
                "{} is not a module object",
                if prefix.is_empty() {
                    "the root"
                } else {
                    prefix
                }
            )));
        };
        let Some(state) = state else {
            return Ok(());
        };
        let Value::Dict(items) = &self.values[*state] else {
            return Ok(());
        };
        for (k, v) in items {
            let Value::Str(name) = &self.values[*k] else {
                continue;
            };
            match &self.values[*v] {
                Value::Tensor(t) if classes.keeps(class, name) => {
                    out.insert(format!("{prefix}{name}"), t.clone());
                }
                Value::Object { class: sub, .. } if sub.starts_with("__torch__.") => {
                    self.collect(*v, &format!("{prefix}{name}."), classes, out, depth + 1)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A tensor's elements copied out of its storage into a contiguous buffer, checked against the
/// storage's size.
fn gather(key: &str, t: &TensorRef, storage: &Storage, bytes: &[u8]) -> Result<TensorData> {
    let bad = |message: String| TorchScriptError::Tensor {
        key: key.to_string(),
        message,
    };
    let size = storage.dtype.size();
    if bytes.len() < storage.numel.saturating_mul(size) {
        return Err(bad(format!(
            "storage data/{} holds {} bytes, fewer than its {} elements",
            storage.key,
            bytes.len(),
            storage.numel
        )));
    }
    if t.shape.len() != t.stride.len() {
        return Err(bad(format!(
            "shape {:?} and stride {:?} differ in rank",
            t.shape, t.stride
        )));
    }
    let count = t
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} overflows", t.shape)))?;
    if count > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            });
        if last.is_none_or(|l| l >= storage.numel) {
            return Err(bad(format!(
                "shape {:?}, stride {:?} at offset {} reach past the storage's {} elements",
                t.shape, t.stride, t.offset, storage.numel
            )));
        }
    }
    let mut out = Vec::with_capacity(count * size);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&bytes[at * size..(at + 1) * size]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(TensorData::from_bytes_vec(
        out,
        t.shape.clone(),
        storage.dtype.dtype(),
    ))
}

/// One item of the pickle machine's stack.
#[derive(Clone, Copy)]
enum Slot {
    Mark,
    Value(Id),
}

/// The subset of pickle protocol 2 (and the framing of 4) that `torch.jit.save` writes in `data.pkl`.
struct Unpickler<'a> {
    bytes: &'a [u8],
    at: usize,
    op_at: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Id>,
    values: Vec<Value>,
    storages: Vec<Storage>,
    storage_keys: HashMap<String, usize>,
}

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            op_at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            values: Vec::new(),
            storages: Vec::new(),
            storage_keys: HashMap::new(),
        }
    }

    fn error(&self, message: impl Into<String>) -> TorchScriptError {
        TorchScriptError::Pickle {
            offset: self.op_at,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.error("the pickle ends in the middle of an opcode"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("a GLOBAL without its newline"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn string(&mut self, len: usize) -> Result<Value> {
        let bytes = self.take(len)?;
        let text =
            std::str::from_utf8(bytes).map_err(|_| self.error("a string that is not UTF-8"))?;
        Ok(Value::Str(text.to_string()))
    }

    fn push(&mut self, value: Value) {
        self.values.push(value);
        self.stack.push(Slot::Value(self.values.len() - 1));
    }

    fn pop(&mut self) -> Result<Id> {
        match self.stack.pop() {
            Some(Slot::Value(id)) => Ok(id),
            Some(Slot::Mark) => Err(self.error("a MARK where a value was expected")),
            None => Err(self.error("the stack is empty")),
        }
    }

    fn top(&self) -> Result<Id> {
        match self.stack.last() {
            Some(Slot::Value(id)) => Ok(*id),
            _ => Err(self.error("no value on top of the stack")),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.error("no MARK on the stack"))?;
        let items = self
            .stack
            .drain(mark..)
            .skip(1)
            .map(|s| match s {
                Slot::Value(id) => id,
                Slot::Mark => unreachable!("the last MARK is at `mark`"),
            })
            .collect();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.error(format!("memo {key} was never stored")))?;
        self.stack.push(Slot::Value(id));
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<()> {
        let allowed = module.starts_with("__torch__")
            || (module == "torch._utils"
                && matches!(name.as_str(), "_rebuild_tensor_v2" | "_rebuild_parameter"))
            || (module == "collections" && name == "OrderedDict")
            || (module == "torch" && Elem::from_storage(&name).is_some());
        if !allowed {
            return Err(TorchScriptError::Global(format!("{module}.{name}")));
        }
        self.push(Value::Global(module, name));
        Ok(())
    }

    fn int(&self, id: Id, what: &str) -> Result<usize> {
        match self.values[id] {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            _ => Err(self.error(format!("{what} is not a non-negative integer"))),
        }
    }

    fn ints(&self, id: Id, what: &str) -> Result<Vec<usize>> {
        match &self.values[id] {
            Value::Tuple(items) | Value::List(items) => {
                items.iter().map(|&i| self.int(i, what)).collect()
            }
            _ => Err(self.error(format!("{what} is not a tuple of integers"))),
        }
    }

    fn tuple(&self, id: Id, what: &str) -> Result<Vec<Id>> {
        match &self.values[id] {
            Value::Tuple(items) => Ok(items.clone()),
            _ => Err(self.error(format!("{what} is not a tuple"))),
        }
    }

    /// `('storage', torch.XStorage, key, location, numel)`: the storage in `data/<key>`.
    fn persistent_load(&mut self, pid: Id) -> Result<Value> {
        let parts = self.tuple(pid, "a persistent id")?;
        let [tag, class, key, _location, numel] = parts[..] else {
            return Err(self.error("a persistent id that is not a 5-tuple"));
        };
        if !matches!(&self.values[tag], Value::Str(s) if s == "storage") {
            return Err(self.error("a persistent id that is not a storage"));
        }
        let dtype = match &self.values[class] {
            Value::Global(m, n) if m == "torch" => Elem::from_storage(n),
            _ => None,
        }
        .ok_or_else(|| self.error("a storage of an unknown type"))?;
        let Value::Str(key) = self.values[key].clone() else {
            return Err(self.error("a storage key that is not a string"));
        };
        let numel = self.int(numel, "a storage size")?;
        let index = match self.storage_keys.get(&key) {
            Some(&i) => i,
            None => {
                self.storages.push(Storage {
                    dtype,
                    key: key.clone(),
                    numel,
                });
                self.storage_keys.insert(key, self.storages.len() - 1);
                self.storages.len() - 1
            }
        };
        Ok(Value::Storage(index))
    }

    /// `REDUCE`: only tensor rebuilding and empty `OrderedDict`s are allowed callables.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Value> {
        let Value::Global(module, name) = self.values[callable].clone() else {
            return Err(self.error("REDUCE of something that is not an allowed global"));
        };
        let args = self.tuple(args, "REDUCE's arguments")?;
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") => {
                let [storage, offset, shape, stride, ..] = args[..] else {
                    return Err(self.error("_rebuild_tensor_v2 with fewer than 4 arguments"));
                };
                let Value::Storage(storage) = self.values[storage] else {
                    return Err(self.error("_rebuild_tensor_v2 of something that is not a storage"));
                };
                Ok(Value::Tensor(TensorRef {
                    storage,
                    offset: self.int(offset, "a storage offset")?,
                    shape: self.ints(shape, "a tensor's size")?,
                    stride: self.ints(stride, "a tensor's stride")?,
                }))
            }
            ("torch._utils", "_rebuild_parameter") => match args.first() {
                Some(&t) if matches!(self.values[t], Value::Tensor(_)) => {
                    Ok(self.values[t].clone())
                }
                _ => Err(self.error("_rebuild_parameter of something that is not a tensor")),
            },
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            _ => Err(self.error(format!("REDUCE of {module}.{name}"))),
        }
    }

    fn run(mut self) -> Result<Tree> {
        loop {
            self.op_at = self.at;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let _protocol = self.u8()?;
                }
                0x95 => {
                    let _frame = self.u64()?;
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Tree {
                        values: self.values,
                        storages: self.storages,
                        root,
                    });
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(Slot::Value(id));
                }
                b'N' | 0x88 | 0x89 => self.push(Value::Opaque),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(self.error("an integer wider than 64 bits"));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Opaque);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?)
                        .map_err(|_| self.error("a string longer than memory"))?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                b'C' | b'B' => {
                    let n = if op == b'C' {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    self.take(n)?;
                    self.push(Value::Opaque);
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b']' => self.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_to_mark()?;
                    self.push(Value::List(items));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_to_mark()?
                    };
                    let list = self.top()?;
                    match &mut self.values[list] {
                        Value::List(l) => l.extend(items),
                        _ => return Err(self.error("APPEND to something that is not a list")),
                    }
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_to_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.error("DICT with an odd number of items"));
                    }
                    let pairs = items.chunks(2).map(|p| (p[0], p[1])).collect();
                    self.push(Value::Dict(pairs));
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_to_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.error("SETITEMS with an odd number of items"));
                    }
                    let dict = self.top()?;
                    match &mut self.values[dict] {
                        Value::Dict(d) => d.extend(items.chunks(2).map(|p| (p[0], p[1]))),
                        _ => return Err(self.error("SETITEM on something that is not a dict")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (self.values[module].clone(), self.values[name].clone()) {
                        (Value::Str(m), Value::Str(n)) => self.global(m, n)?,
                        _ => return Err(self.error("STACK_GLOBAL of non-strings")),
                    }
                }
                0x81 => {
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    match self.values[class].clone() {
                        Value::Global(m, n) if m.starts_with("__torch__") => {
                            self.push(Value::Object {
                                class: format!("{m}.{n}"),
                                state: None,
                            });
                        }
                        Value::Global(m, n) => {
                            return Err(self.error(format!("NEWOBJ of {m}.{n}")));
                        }
                        _ => return Err(self.error("NEWOBJ of something that is not a class")),
                    }
                }
                b'b' => {
                    let state = self.pop()?;
                    let object = self.top()?;
                    match &mut self.values[object] {
                        Value::Object { state: s, .. } => *s = Some(state),
                        _ => return Err(self.error("BUILD of something that is not an object")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.push(value);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let value = self.persistent_load(pid)?;
                    self.push(value);
                }
                b'q' => {
                    let key = self.u8()? as u32;
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.u32()?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u32;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()? as u32;
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.u32()?;
                    self.memo_get(key)?;
                }
                other => {
                    return Err(self.error(format!(
                        "opcode 0x{other:02x} is not one TorchScript's data.pkl uses"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpickle(bytes: &[u8]) -> Result<Tree> {
        Unpickler::new(bytes).run()
    }

    #[test]
    fn a_global_outside_the_allowed_set_is_refused_by_name() {
        // GLOBAL 'os system', then REDUCE: what a malicious pickle does
        let err = unpickle(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("os.system") && err.contains("refused"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_pickle_is_an_error_not_a_panic() {
        let err = unpickle(b"\x80\x02X\xff\x00\x00\x00abc")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ends in the middle"), "{err}");
        assert!(unpickle(b"").is_err());
        assert!(unpickle(b"(t(").is_err());
    }

    #[test]
    fn memoised_containers_are_shared_as_in_python() {
        // d = {}; memoised empty, then filled, dropped and fetched from the memo: BUILD gets the filled dict
        let tree =
            unpickle(b"\x80\x02c__torch__.m\nM\nq\x00)\x81}q\x01X\x01\x00\x00\x00aK\x07s0h\x01b.")
                .map_err(|e| e.to_string());
        let tree = match tree {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let Value::Object {
            class,
            state: Some(state),
        } = &tree.values[tree.root]
        else {
            panic!("not an object")
        };
        assert_eq!(class, "__torch__.m.M");
        let Value::Dict(items) = &tree.values[*state] else {
            panic!("no dict")
        };
        assert_eq!(items.len(), 1);
    }
}
