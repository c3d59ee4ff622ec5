//! The recorder checkpoints are written with: burn's binary format (`BinFileRecorder`'s, which reads
//! them back), but a write that fails is an error. burn's own file recorder writes through a
//! `BufWriter` it drops without flushing, so a disk that fills up during the last few kilobytes
//! leaves a cut-off file and no error; here the buffer is flushed and the error returned.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use burn::record::{BinFileRecorder, FileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use serde::{de::DeserializeOwned, Serialize};

/// [`BinFileRecorder`] in full precision, with every write error reported.
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckedBinFileRecorder;

fn unknown(e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Unknown(e.to_string())
}

impl<B: Backend> Recorder<B> for CheckedBinFileRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, mut file: PathBuf) -> Result<(), RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let mut writer = BufWriter::new(std::fs::File::create(&file).map_err(unknown)?);
        bincode::serde::encode_into_std_write(&item, &mut writer, bincode::config::standard())
            .map_err(unknown)?;
        // the flush's error is the one BufWriter's drop would swallow
        writer.flush().map_err(unknown)?;
        Ok(())
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        Recorder::<B>::load_item(&BinFileRecorder::<FullPrecisionSettings>::new(), file)
    }
}

impl<B: Backend> FileRecorder<B> for CheckedBinFileRecorder {
    fn file_extension() -> &'static str {
        "bin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};

    type B = burn::backend::Flex;

    #[test]
    fn reads_back_what_it_wrote_as_burns_bin_format() {
        let device = Default::default();
        let layer: Linear<B> = LinearConfig::new(3, 2).init(&device);
        // read first: a lazily initialised parameter cloned before it is read draws anew
        let before: Vec<f32> = layer.weight.val().into_data().to_vec().unwrap();
        let dir = tempfile::tempdir().unwrap();
        layer
            .save_file(dir.path().join("layer"), &CheckedBinFileRecorder)
            .unwrap();
        // burn's own recorder reads the file: the format is its
        let loaded = LinearConfig::new(3, 2)
            .init::<B>(&device)
            .load_file(
                dir.path().join("layer"),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
                &device,
            )
            .unwrap();
        let after: Vec<f32> = loaded.weight.val().into_data().to_vec().unwrap();
        assert_eq!(before, after);
        assert_ne!(before, vec![0.0; 6]);
    }
}
