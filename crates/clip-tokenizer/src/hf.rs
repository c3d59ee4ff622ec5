//! Hugging Face tokenizers (`tokenizer.json`), as open_clip's `HFTokenizer` runs them for the models
//! whose text side is not CLIP's BPE (CLIPA's BERT, the worldwide models' mT5 and XLM-V, SigLIP's):
//! the text cleaned, encoded with the tokenizer's own special tokens, cut and padded to the context
//! length (`padding="max_length", truncation=True`), and optionally the separator token zeroed.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::clean::{clean, clean_canonical, clean_whitespace};
use crate::TokenizerError;

/// open_clip's text cleaning before a Hugging Face tokenizer (`tokenizer_kwargs.clean`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cleaning {
    /// `whitespace` (the default): ftfy, HTML entities, whitespace collapsed.
    #[default]
    Whitespace,
    /// `lower`: the same, lowercased (CLIP's own cleaning).
    Lower,
    /// `canonicalize`: lowercased, ASCII punctuation removed.
    Canonicalize,
    /// `lowercase`: lowercased and nothing else, whitespace kept as it is — what transformers'
    /// `Siglip2Tokenizer` puts before its `tokenizer.json` (not an open_clip option).
    Lowercase,
}

impl Cleaning {
    /// The option's name in open_clip configs (`whitespace`, `lower`, `canonicalize`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "whitespace" => Some(Self::Whitespace),
            "lower" => Some(Self::Lower),
            "canonicalize" => Some(Self::Canonicalize),
            "lowercase" => Some(Self::Lowercase),
            _ => None,
        }
    }

    /// The option's name in open_clip configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Whitespace => "whitespace",
            Self::Lower => "lower",
            Self::Canonicalize => "canonicalize",
            Self::Lowercase => "lowercase",
        }
    }

    fn apply(self, text: &str) -> String {
        match self {
            Self::Whitespace => clean_whitespace(text),
            Self::Lower => clean(text),
            Self::Canonicalize => clean_canonical(text),
            // char by char, as the `tokenizers` Lowercase normalizer does (str::to_lowercase would
            // turn a word-final Σ into ς)
            Self::Lowercase => text.chars().flat_map(char::to_lowercase).collect(),
        }
    }
}

/// A `tokenizer.json` tokenizer producing open_clip's `HFTokenizer` ids.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    context_length: usize,
    cleaning: Cleaning,
    pad_id: u32,
    /// The separator's id when it is to be zeroed (open_clip's `strip_sep_token`).
    strip: Option<u32>,
    sep_id: Option<u32>,
    /// The files read (`tokenizer.json`, and `tokenizer_config.json` when there was one).
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("context_length", &self.context_length)
            .field("cleaning", &self.cleaning)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

/// A special token's name from `tokenizer_config.json` (a string, or `{"content": …}`).
fn special(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("content")?.as_str().map(str::to_string),
    }
}

impl HfTokenizer {
    /// Reads `dir/tokenizer.json`; see [`from_file`](Self::from_file).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Reads a `tokenizer.json` and, when present beside it, `tokenizer_config.json` for the padding
    /// and separator tokens (else `[PAD]`/`<pad>` and `[SEP]`/`</s>` if the vocabulary has them;
    /// padding with 0 otherwise, as open_clip's zero-filled rows; `eos_token` when there is no
    /// `sep_token`). Context length 77, whitespace
    /// cleaning.
    pub fn from_file(file: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let file = file.as_ref();
        let bad = |message: String| TokenizerError::HuggingFace {
            path: file.display().to_string(),
            message,
        };
        let inner = Tokenizer::from_file(file).map_err(|e| bad(e.to_string()))?;
        let config_file = file.with_file_name("tokenizer_config.json");
        let mut files = vec![file.to_path_buf()];
        let config: serde_json::Value = match std::fs::read_to_string(&config_file) {
            Ok(text) => {
                let config =
                    serde_json::from_str(&text).map_err(|e| TokenizerError::HuggingFace {
                        path: config_file.display().to_string(),
                        message: e.to_string(),
                    })?;
                files.push(config_file);
                config
            }
            Err(_) => serde_json::Value::Null,
        };
        let id = |names: &[String]| names.iter().find_map(|n| inner.token_to_id(n));
        let pad_names: Vec<String> = special(&config, "pad_token")
            .into_iter()
            .chain(["[PAD]".to_string(), "<pad>".to_string()])
            .collect();
        let sep_names: Vec<String> = special(&config, "sep_token")
            .into_iter()
            .chain(special(&config, "eos_token"))
            .chain(["[SEP]".to_string(), "</s>".to_string()])
            .collect();
        Ok(Self {
            pad_id: id(&pad_names).unwrap_or(0),
            sep_id: id(&sep_names),
            strip: None,
            files,
            inner,
            context_length: crate::DEFAULT_CONTEXT_LENGTH,
            cleaning: Cleaning::default(),
        })
    }

    /// Sets the padded length of [`tokenize`](Self::tokenize) (at least 2).
    pub fn with_context_length(mut self, context_length: usize) -> Result<Self, TokenizerError> {
        if context_length < 2 {
            return Err(TokenizerError::ContextLength(context_length));
        }
        self.context_length = context_length;
        Ok(self)
    }

    /// Sets the cleaning applied before encoding.
    pub fn with_cleaning(mut self, cleaning: Cleaning) -> Self {
        self.cleaning = cleaning;
        self
    }

    /// Zeroes the separator token in [`tokenize`](Self::tokenize)'s rows (open_clip's `strip_sep_token`,
    /// CLIPA's setting).
    pub fn with_strip_sep_token(mut self, strip: bool) -> Self {
        self.strip = if strip { self.sep_id } else { None };
        self
    }

    /// The length every row is padded or cut to.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The separator (end) token's id, if the vocabulary has one.
    pub fn sep_id(&self) -> Option<u32> {
        self.sep_id
    }

    /// The files it was read from (`tokenizer.json`, then `tokenizer_config.json` if there was one),
    /// for copying beside a saved model.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The number of ids the tokenizer can emit.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text`, special tokens included, cut to the context length (the special tokens
    /// kept) and padded with the padding token.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut inner = self.inner.clone();
        inner
            .with_truncation(Some(TruncationParams {
                max_length: self.context_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        inner.with_padding(None);
        let encoding = inner
            .encode(self.cleaning.apply(text), true)
            .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.truncate(self.context_length);
        ids.resize(self.context_length, self.pad_id);
        if let Some(sep) = self.strip {
            ids.iter_mut()
                .filter(|id| **id == sep)
                .for_each(|id| *id = 0);
        }
        Ok(ids)
    }
}
