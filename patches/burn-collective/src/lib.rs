mod global;
pub use global::*;

mod config;
pub use config::*;

mod api;
pub use api::*;

mod local;

// (the upstream unit tests are left out of this patched copy: they need the GPU backends)
