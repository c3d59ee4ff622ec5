//! `--device`: which compiled-in burn backend runs the model.

use std::str::FromStr;

/// A backend and device index chosen on the command line, e.g. `flex`, `cuda:1`, `wgpu`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Flex,
    Ndarray,
    Wgpu(usize),
    Vulkan(usize),
    Metal(usize),
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => (
                n,
                i.parse::<usize>()
                    .map_err(|_| format!("bad device index in {s:?}"))?,
            ),
            None => (s, 0),
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => DeviceChoice::Flex,
            "ndarray" => DeviceChoice::Ndarray,
            "wgpu" | "gpu" => DeviceChoice::Wgpu(index),
            "vulkan" => DeviceChoice::Vulkan(index),
            "metal" => DeviceChoice::Metal(index),
            "cuda" => DeviceChoice::Cuda(index),
            _ => {
                return Err(format!(
                "unknown device {s:?} (flex, ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N])"
            ))
            }
        })
    }
}

impl DeviceChoice {
    /// The default: the fastest backend compiled in, CPU first (it always works).
    pub fn default_choice() -> Self {
        if cfg!(feature = "flex") {
            DeviceChoice::Flex
        } else if cfg!(feature = "ndarray") {
            DeviceChoice::Ndarray
        } else if cfg!(feature = "cuda") {
            DeviceChoice::Cuda(0)
        } else if cfg!(feature = "vulkan") {
            DeviceChoice::Vulkan(0)
        } else if cfg!(feature = "metal") {
            DeviceChoice::Metal(0)
        } else {
            DeviceChoice::Wgpu(0)
        }
    }

    pub fn feature(&self) -> &'static str {
        match self {
            DeviceChoice::Flex => "flex",
            DeviceChoice::Ndarray => "ndarray",
            DeviceChoice::Wgpu(_) => "wgpu",
            DeviceChoice::Vulkan(_) => "vulkan",
            DeviceChoice::Metal(_) => "metal",
            DeviceChoice::Cuda(_) => "cuda",
        }
    }
}

/// Calls `$($run)::+::<Backend>(device, args…)` for the chosen backend, on a device set to the chosen
/// precision ([`prepare`]), or returns an error naming the cargo feature to rebuild with.
#[macro_export]
macro_rules! dispatch {
    ($choice:expr, $precision:expr, $($run:ident)::+ ( $($arg:expr),* )) => {{
        #[allow(unused_imports)]
        use $crate::device::{prepare, DeviceChoice};
        match $choice {
            #[cfg(feature = "flex")]
            DeviceChoice::Flex => {
                let device = Default::default();
                prepare::<burn::backend::Flex>(&device, $precision, false)?;
                $($run)::+::<burn::backend::Flex>(&device, $($arg),*)
            }
            #[cfg(feature = "ndarray")]
            DeviceChoice::Ndarray => {
                let device = Default::default();
                prepare::<burn::backend::NdArray>(&device, $precision, false)?;
                $($run)::+::<burn::backend::NdArray>(&device, $($arg),*)
            }
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu(i) => {
                let device = $crate::device::wgpu_device(i);
                prepare::<burn::backend::Wgpu>(&device, $precision, true)?;
                $($run)::+::<burn::backend::Wgpu>(&device, $($arg),*)
            }
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan(i) => {
                let device = $crate::device::wgpu_device(i);
                prepare::<burn::backend::Vulkan>(&device, $precision, true)?;
                $($run)::+::<burn::backend::Vulkan>(&device, $($arg),*)
            }
            #[cfg(feature = "metal")]
            DeviceChoice::Metal(i) => {
                let device = $crate::device::wgpu_device(i);
                prepare::<burn::backend::Metal>(&device, $precision, true)?;
                $($run)::+::<burn::backend::Metal>(&device, $($arg),*)
            }
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(i) => {
                let device = burn::backend::cuda::CudaDevice { index: i };
                prepare::<burn::backend::Cuda>(&device, $precision, true)?;
                $($run)::+::<burn::backend::Cuda>(&device, $($arg),*)
            }
            #[allow(unreachable_patterns)]
            other => Err($crate::CliError::Usage(format!(
                "this build of clip has no {} backend; rebuild with `--features {}`",
                other.feature(),
                other.feature()
            ))),
        }
    }};
}

/// Sets the device's precision before anything runs on it (a clear error if it cannot compute in it),
/// and on GPUs says once that the first batches tune kernels when burn's autotune has no cache yet.
pub fn prepare<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    precision: clip::Precision,
    gpu: bool,
) -> Result<(), crate::CliError> {
    // creating the device's client is where cubecl panics on a machine without a usable GPU or driver
    // (on its device thread, then on this one): catch it, and keep the first message as the reason
    let reason = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let previous = std::panic::take_hook();
    let first = reason.clone();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        if let (Ok(mut slot), Some(text)) = (first.lock(), text) {
            slot.get_or_insert(text);
        }
    }));
    let set = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        clip::set_precision::<B>(device, precision)
    }));
    std::panic::set_hook(previous);
    match set {
        Ok(result) => result?,
        Err(_) => {
            let reason = reason
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .unwrap_or_else(|| "no usable GPU or driver".into());
            return Err(crate::CliError::Usage(format!(
                "cannot open device {device:?}: {reason}"
            )));
        }
    }
    if gpu {
        autotune_note();
    }
    Ok(())
}

/// burn's autotune times several kernels for each new operation shape on its first run and keeps the
/// fastest in a cache on disk (cubecl's `autotune.cache` setting: the `target/` of the Cargo project
/// around the working directory, else the user's cache directory). Without that cache the first
/// batches are slow; say so, once.
#[cfg(any(
    feature = "wgpu",
    feature = "vulkan",
    feature = "metal",
    feature = "cuda"
))]
fn autotune_note() {
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let root = CubeClRuntimeConfig::get()
        .autotune
        .cache
        .root()
        .join("autotune");
    let cached = std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some());
    if !cached {
        eprintln!(
            "note: first GPU run here: burn's autotune times kernels for each new shape during the first \
             batches (once; the results are kept in {})",
            root.display()
        );
    }
}

#[cfg(not(any(
    feature = "wgpu",
    feature = "vulkan",
    feature = "metal",
    feature = "cuda"
)))]
fn autotune_note() {}

/// A wgpu device (`0`: the default adapter, `N`: the N-th discrete GPU); cubecl panics when there is
/// none, which [`prepare`] turns into an error.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
pub fn wgpu_device(index: usize) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    if index == 0 {
        WgpuDevice::DefaultDevice
    } else {
        WgpuDevice::DiscreteGpu(index)
    }
}
