//! CLIP's byte-level BPE tokenizer, giving the same ids as open_clip's default `SimpleTokenizer`:
//! the same cleaning ([`clean()`]), the same word split, the same merges (run by the `tokenizers` crate),
//! start 49406, end 49407, zero padding, and overlong texts cut with the end token kept last.
//!
//! The vocabulary `bpe_simple_vocab_16e6.txt.gz` ships in this crate; it is OpenAI's, MIT licensed
//! (see `assets/LICENSE-bpe`).
//!
//! The root crate `clip` tokenizes with this before its text encoder; the ids fit every released CLIP
//! model (open_clip, OpenAI and Hugging Face checkpoints share the vocabulary).
//!
//! ```
//! use clip_tokenizer::{ClipTokenizer, END_OF_TEXT, START_OF_TEXT};
//!
//! let tokenizer = ClipTokenizer::new()?;
//! let ids = tokenizer.tokenize("A photo of a CAT!");
//! assert_eq!(ids.len(), 77); // padded to the context length
//! // "a</w>" 320, "photo</w>" 1125, "of</w>" 539, "cat</w>" 2368, "!</w>" 256
//! assert_eq!(ids[..8], [START_OF_TEXT, 320, 1125, 539, 320, 2368, 256, END_OF_TEXT]);
//! assert!(ids[8..].iter().all(|&id| id == 0));
//! assert_eq!(tokenizer.decode(&ids), "a photo of a cat !");
//!
//! // a batch as a burn tensor, `[texts, context_length]`
//! type B = burn::backend::Flex;
//! let batch = tokenizer.tokenize_batch::<B, _>(&["a cat", "a dog"], &Default::default())?;
//! assert_eq!(batch.dims(), [2, 77]);
//! # Ok::<(), clip_tokenizer::TokenizerError>(())
//! ```

#![warn(missing_docs)]

pub mod clean;
pub mod hf;
mod html;
mod html_entities;
pub mod text;

use std::io::Read;
use std::path::Path;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use regex::Regex;
use tokenizers::models::bpe::BPE;
use tokenizers::Model;

pub use clean::{clean, clean_canonical, clean_whitespace};
pub use hf::{Cleaning, HfTokenizer};
pub use html::unescape as html_unescape;
pub use text::TextTokenizer;

/// `<start_of_text>`.
pub const START_OF_TEXT: u32 = 49406;
/// `<end_of_text>`.
pub const END_OF_TEXT: u32 = 49407;
/// Context length of every released CLIP model.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 special tokens.
pub const VOCAB_SIZE: usize = 49408;

const MERGES: usize = 49152 - 256 - 2;
const SPECIAL: [&str; 2] = ["<start_of_text>", "<end_of_text>"];
static EMBEDDED_VOCAB: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");

/// What can go wrong reading a vocabulary or tokenizing.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The vocabulary file could not be read or decompressed.
    #[error("cannot read BPE vocabulary {path}: {source}")]
    Read {
        /// The vocabulary file.
        path: String,
        /// The I/O or gzip error.
        source: std::io::Error,
    },
    /// A merge line of the vocabulary is not two space-separated symbols.
    #[error("BPE vocabulary {path}: line {line} is not a merge of two symbols: {text:?}")]
    BadMerge {
        /// The vocabulary file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The vocabulary has fewer merges than CLIP's 48,894.
    #[error("BPE vocabulary {path} has {found} merges; CLIP needs {MERGES}")]
    TooFewMerges {
        /// The vocabulary file.
        path: String,
        /// How many merges it has.
        found: usize,
    },
    /// The `tokenizers` crate refused the vocabulary and merges.
    #[error("building the BPE model failed: {0}")]
    Bpe(String),
    /// A context length below 2 was asked for.
    #[error("context length {0} is too short: it must hold at least the start and end tokens")]
    ContextLength(usize),
    /// [`ClipTokenizer::tokenize_batch`] got no texts.
    #[error("no texts to tokenize")]
    Empty,
    /// A Hugging Face tokenizer file could not be read.
    #[error("Hugging Face tokenizer {path}: {message}")]
    HuggingFace {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The model reads text with a Hugging Face tokenizer that was not given.
    #[error(
        "this model reads text with the Hugging Face tokenizer {name:?}, and no tokenizer.json was \
         found ({looked_in}): put the tokenizer's tokenizer.json beside the weights or pass --tokenizer FILE"
    )]
    Missing {
        /// Its name in the model's config (`hf_tokenizer_name`).
        name: String,
        /// Where it was looked for.
        looked_in: String,
    },
}

/// GPT-2's reversible byte → printable character table (`bytes_to_unicode`), in vocabulary order.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut table: Vec<(u8, char)> = (0u32..256)
        .filter(|&b| printable(b))
        .map(|b| (b as u8, char::from_u32(b).unwrap_or('?')))
        .collect();
    for (next, b) in (256u32..).zip((0u32..256).filter(|&b| !printable(b))) {
        table.push((b as u8, char::from_u32(next).unwrap_or('?')));
    }
    table
}

/// CLIP's tokenizer: text to the ids of open_clip's `SimpleTokenizer`, padded to a context length
/// ([`DEFAULT_CONTEXT_LENGTH`] unless set with [`with_context_length`](Self::with_context_length)).
#[derive(Clone)]
pub struct ClipTokenizer {
    bpe: BPE,
    byte_encoder: [char; 256],
    decoder: Vec<String>,
    words: Regex,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// The tokenizer with the vocabulary embedded in this crate.
    pub fn new() -> Result<Self, TokenizerError> {
        Self::from_gzip_bytes(EMBEDDED_VOCAB, "<embedded bpe_simple_vocab_16e6.txt.gz>")
    }

    /// Reads a `bpe_simple_vocab_16e6.txt.gz`-style file (gzip or plain text).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: name.clone(),
            source,
        })?;
        Self::from_gzip_bytes(&bytes, &name)
    }

    fn from_gzip_bytes(bytes: &[u8], name: &str) -> Result<Self, TokenizerError> {
        let mut text = String::new();
        let read = if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)
        } else {
            std::io::Cursor::new(bytes).read_to_string(&mut text)
        };
        read.map_err(|source| TokenizerError::Read {
            path: name.to_string(),
            source,
        })?;
        let merges = text
            .split('\n')
            .enumerate()
            .skip(1)
            .take(MERGES)
            .map(|(i, line)| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                    _ => Err(TokenizerError::BadMerge {
                        path: name.to_string(),
                        line: i + 1,
                        text: line.to_string(),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if merges.len() < MERGES {
            return Err(TokenizerError::TooFewMerges {
                path: name.to_string(),
                found: merges.len(),
            });
        }
        let table = bytes_to_unicode();
        let mut decoder: Vec<String> = table.iter().map(|(_, c)| c.to_string()).collect();
        decoder.extend(table.iter().map(|(_, c)| format!("{c}</w>")));
        decoder.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        decoder.extend(SPECIAL.iter().map(|s| s.to_string()));
        let vocab: tokenizers::models::bpe::Vocab = decoder
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_string())
            .build()
            .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        let mut byte_encoder = ['\0'; 256];
        for (b, c) in table {
            byte_encoder[b as usize] = c;
        }
        let words = Regex::new(
            r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        Ok(Self {
            bpe,
            byte_encoder,
            decoder,
            words,
            context_length: DEFAULT_CONTEXT_LENGTH,
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

    /// The length every [`tokenize`](Self::tokenize) row is padded or cut to.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// BPE ids of the cleaned text, without start, end or padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_up_to(text, usize::MAX)
    }

    /// The first `limit` (or more) ids of [`encode`](Self::encode): words are merged one by one, so
    /// those after the limit need not be. Cleaning still reads the whole text (linear time).
    fn encode_up_to(&self, text: &str, limit: usize) -> Vec<u32> {
        let text = clean(text);
        let mut ids = Vec::new();
        for word in self.words.find_iter(&text).map(|m| m.as_str()) {
            if ids.len() >= limit {
                break;
            }
            match SPECIAL.iter().position(|s| *s == word) {
                Some(i) => ids.push(START_OF_TEXT + i as u32),
                None => {
                    let mapped: String = word
                        .bytes()
                        .map(|b| self.byte_encoder[b as usize])
                        .collect();
                    // Every byte symbol is in the vocabulary, so BPE cannot fail on mapped text.
                    if let Ok(tokens) = self.bpe.tokenize(&mapped) {
                        ids.extend(tokens.into_iter().map(|t| t.id));
                    }
                }
            }
        }
        ids
    }

    /// `[start] ids [end]`, zero-padded to the context length; an overlong text is cut to the context
    /// length and its last id replaced by the end token (open_clip's rule).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.context_length);
        ids.push(START_OF_TEXT);
        // a row keeps at most context_length - 2 of the text's ids: a long text (a 10 MB file) is
        // cleaned whole, as open_clip does, but only its first words go through BPE
        ids.extend(self.encode_up_to(text, self.context_length - 2));
        ids.push(END_OF_TEXT);
        if ids.len() > self.context_length {
            ids.truncate(self.context_length);
            ids[self.context_length - 1] = END_OF_TEXT;
        }
        ids.resize(self.context_length, 0);
        ids
    }

    /// A `[texts, context_length]` Int tensor of [`tokenize`](Self::tokenize) rows.
    pub fn tokenize_batch<B: Backend, S: AsRef<str>>(
        &self,
        texts: &[S],
        device: &B::Device,
    ) -> Result<Tensor<B, 2, Int>, TokenizerError> {
        if texts.is_empty() {
            return Err(TokenizerError::Empty);
        }
        let ids: Vec<i64> = texts
            .iter()
            .flat_map(|t| self.tokenize(t.as_ref()))
            .map(i64::from)
            .collect();
        let data = TensorData::new(ids, [texts.len(), self.context_length]);
        Ok(Tensor::from_data(data, device))
    }

    /// Text of ids (special tokens and padding dropped), words separated by spaces as open_clip does.
    pub fn decode(&self, ids: &[u32]) -> String {
        let decoder_bytes: std::collections::HashMap<char, u8> = self
            .byte_encoder
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        let text: String = ids
            .iter()
            .filter(|&&id| id != 0 && id < START_OF_TEXT)
            .filter_map(|&id| self.decoder.get(id as usize))
            .map(String::as_str)
            .collect();
        let bytes: Vec<u8> = text
            .replace("</w>", " ")
            .chars()
            .flat_map(|c| match decoder_bytes.get(&c) {
                Some(b) => vec![*b],
                None => c.to_string().into_bytes(),
            })
            .collect();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let table = bytes_to_unicode();
        assert_eq!(table.len(), 256);
        let chars: std::collections::HashSet<char> = table.iter().map(|(_, c)| *c).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(table[0], (b'!', '!'));
        assert_eq!(table[188], (0, 'Ā'));
    }

    #[test]
    fn rejects_tiny_context() {
        let t = ClipTokenizer::new().unwrap();
        assert!(matches!(
            t.with_context_length(1),
            Err(TokenizerError::ContextLength(1))
        ));
    }
}
