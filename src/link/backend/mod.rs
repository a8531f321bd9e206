//! The kernel's fast paths for moving file data, one backend per platform with the same
//! signatures; the code above never asks which platform it runs on.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
mod generic;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
pub use generic::*;
