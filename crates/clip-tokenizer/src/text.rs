//! The tokenizer a text tower reads: CLIP's BPE for OpenAI's vocabulary, a Hugging Face
//! `tokenizer.json` for the models trained on another (CLIPA, the worldwide models, SigLIP), or the
//! name of one that was not found, so that a model without it still embeds images.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::{ClipTokenizer, HfTokenizer, TokenizerError, END_OF_TEXT, VOCAB_SIZE};

/// Any tokenizer a text tower may need, with the interface the model code uses.
#[derive(Clone, Debug)]
pub enum TextTokenizer {
    /// CLIP's byte-level BPE (every OpenAI, open_clip-standard and Hugging Face CLIP model).
    Clip(ClipTokenizer),
    /// A `tokenizer.json` run as open_clip's `HFTokenizer` runs it.
    HuggingFace(HfTokenizer),
    /// The model names a Hugging Face tokenizer that was not given: every text fails with
    /// [`TokenizerError::Missing`], images still embed.
    Missing {
        /// The tokenizer's name in the config (`hf_tokenizer_name`).
        name: String,
        /// Where it was looked for, for the error message.
        looked_in: String,
    },
}

impl From<ClipTokenizer> for TextTokenizer {
    fn from(t: ClipTokenizer) -> Self {
        Self::Clip(t)
    }
}

impl From<HfTokenizer> for TextTokenizer {
    fn from(t: HfTokenizer) -> Self {
        Self::HuggingFace(t)
    }
}

impl TextTokenizer {
    /// CLIP's tokenizer cut or padded to `context_length`.
    pub fn clip(context_length: usize) -> Result<Self, TokenizerError> {
        Ok(Self::Clip(
            ClipTokenizer::new()?.with_context_length(context_length)?,
        ))
    }

    /// Sets the length every row is padded or cut to (at least 2).
    pub fn with_context_length(self, context_length: usize) -> Result<Self, TokenizerError> {
        Ok(match self {
            Self::Clip(t) => Self::Clip(t.with_context_length(context_length)?),
            Self::HuggingFace(t) => Self::HuggingFace(t.with_context_length(context_length)?),
            missing @ Self::Missing { .. } => missing,
        })
    }

    /// The length every row is padded or cut to (0 for a missing tokenizer).
    pub fn context_length(&self) -> usize {
        match self {
            Self::Clip(t) => t.context_length(),
            Self::HuggingFace(t) => t.context_length(),
            Self::Missing { .. } => 0,
        }
    }

    /// The number of ids it can emit: a model's token table needs at least this many rows.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Clip(_) => VOCAB_SIZE,
            Self::HuggingFace(t) => t.vocab_size(),
            Self::Missing { .. } => 0,
        }
    }

    /// The id that ends a text, after which a row holds only padding (CLIP's `<end_of_text>`, the
    /// tokenizer's separator or `</s>`), if it has one.
    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            Self::Clip(_) => Some(END_OF_TEXT),
            Self::HuggingFace(t) => t.sep_id(),
            Self::Missing { .. } => None,
        }
    }

    /// The ids of `text`, padded or cut to the context length.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Self::Clip(t) => Ok(t.tokenize(text)),
            Self::HuggingFace(t) => t.tokenize(text),
            Self::Missing { name, looked_in } => Err(TokenizerError::Missing {
                name: name.clone(),
                looked_in: looked_in.clone(),
            }),
        }
    }

    /// [`tokenize`](Self::tokenize) rows of `texts`, `[texts, context_length]`, on the host.
    pub fn tokenize_data<S: AsRef<str>>(&self, texts: &[S]) -> Result<TensorData, TokenizerError> {
        if texts.is_empty() {
            return Err(TokenizerError::Empty);
        }
        let mut ids = Vec::with_capacity(texts.len() * self.context_length());
        for text in texts {
            ids.extend(self.tokenize(text.as_ref())?.into_iter().map(i64::from));
        }
        Ok(TensorData::new(ids, [texts.len(), self.context_length()]))
    }

    /// [`tokenize_data`](Self::tokenize_data) as an Int tensor on `device`.
    pub fn tokenize_batch<B: Backend, S: AsRef<str>>(
        &self,
        texts: &[S],
        device: &B::Device,
    ) -> Result<Tensor<B, 2, Int>, TokenizerError> {
        Ok(Tensor::from_data(self.tokenize_data(texts)?, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tokenizer_names_itself_on_use() {
        let t = TextTokenizer::Missing {
            name: "bert-base-uncased".into(),
            looked_in: "/models/clipa".into(),
        };
        let err = t.tokenize("a cat").unwrap_err().to_string();
        assert!(err.contains("bert-base-uncased"), "{err}");
        assert!(err.contains("/models/clipa"), "{err}");
        assert!(t.tokenize_data(&["a cat"]).is_err());
    }

    #[test]
    fn clip_rows_end_at_its_end_token() {
        let t = TextTokenizer::clip(10).unwrap();
        let batch = t
            .tokenize_batch::<burn::backend::Flex, _>(&["a cat", "a dog"], &Default::default())
            .unwrap();
        assert_eq!(batch.dims(), [2, 10]);
        let ids = t
            .tokenize_data(&["a cat"])
            .unwrap()
            .to_vec::<i64>()
            .unwrap();
        // start, "a</w>" 320, "cat</w>" 2368, end, padding
        assert_eq!(ids[..5], [49406, 320, 2368, 49407, 0]);
        assert_eq!(t.end_of_text(), Some(END_OF_TEXT));
    }
}
