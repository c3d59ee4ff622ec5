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

/// Calls `$($run)::+::<Backend>(device, args…)` for the chosen backend, or returns an error naming the cargo
/// feature to rebuild with.
#[macro_export]
macro_rules! dispatch {
    ($choice:expr, $($run:ident)::+ ( $($arg:expr),* )) => {{
        #[allow(unused_imports)]
        use $crate::device::DeviceChoice;
        match $choice {
            #[cfg(feature = "flex")]
            DeviceChoice::Flex => $($run)::+::<burn::backend::Flex>(&Default::default(), $($arg),*),
            #[cfg(feature = "ndarray")]
            DeviceChoice::Ndarray => $($run)::+::<burn::backend::NdArray>(&Default::default(), $($arg),*),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu(i) => $($run)::+::<burn::backend::Wgpu>(&$crate::device::wgpu_device(i), $($arg),*),
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan(i) => $($run)::+::<burn::backend::Vulkan>(&$crate::device::wgpu_device(i), $($arg),*),
            #[cfg(feature = "metal")]
            DeviceChoice::Metal(i) => $($run)::+::<burn::backend::Metal>(&$crate::device::wgpu_device(i), $($arg),*),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(i) => {
                let device = $crate::device::cuda_device(i)?;
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

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
pub fn wgpu_device(index: usize) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    if index == 0 {
        WgpuDevice::DefaultDevice
    } else {
        WgpuDevice::DiscreteGpu(index)
    }
}

/// burn panics when the CUDA driver cannot be loaded; turn that into an error.
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> Result<burn::backend::cuda::CudaDevice, crate::CliError> {
    use burn::tensor::Tensor;
    let device = burn::backend::cuda::CudaDevice { index };
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<burn::backend::Cuda, 1>::ones([1], &device);
        t.into_data()
    });
    match probe {
        Ok(_) => Ok(device),
        Err(_) => Err(crate::CliError::Usage(format!(
            "CUDA device {index} is not available (no NVIDIA driver or GPU found)"
        ))),
    }
}
