//! The CUDA driver calls behind [`super::discover`], through cudarc with the
//! driver library loaded at run time.
//!
//! cudarc panics on first use when `libcuda.so.1` cannot be loaded
//! (`CudaContext::new` and `device_count` alike), so [`query`] asks `is_culib_present` before
//! anything else and reports a missing driver as a value.

use cudarc::driver::{result, sys};

use super::{Discovery, GpuDevice};

/// Asks the driver for its devices.
pub(super) fn query() -> Discovery {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library by
    // its candidate names and drops the handle; it touches no CUDA state and
    // is safe to call from any thread, any number of times.
    if !unsafe { sys::is_culib_present() } {
        return Discovery::NoDriver;
    }
    // The library loads, so cudarc's lazily loaded function table will not
    // panic from here on.
    if let Err(e) = result::init() {
        return Discovery::DriverError(format!("cuInit failed: {e}"));
    }
    let count = match result::device::get_count() {
        Ok(n) => n,
        Err(e) => return Discovery::DriverError(format!("cuDeviceGetCount failed: {e}")),
    };
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let dev = match result::device::get(ordinal) {
            Ok(dev) => dev,
            Err(e) => {
                return Discovery::DriverError(format!("cuDeviceGet({ordinal}) failed: {e}"));
            }
        };
        let name = result::device::get_name(dev).unwrap_or_else(|e| format!("unnamed ({e})"));
        // SAFETY: `dev` was just returned by `cuDeviceGet` for this ordinal
        // after a successful `cuInit`, which is all `total_mem` requires.
        let total_memory = unsafe { result::device::total_mem(dev) }.unwrap_or(0) as u64;
        let attr = |a| {
            // SAFETY: as above, `dev` is a valid device handle; the
            // attribute is a plain integer query.
            unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0)
        };
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        devices.push(GpuDevice {
            ordinal: ordinal as u32,
            name,
            total_memory,
            compute_capability: (major as u32, minor as u32),
        });
    }
    if devices.is_empty() {
        Discovery::NoDevices
    } else {
        Discovery::Devices(devices)
    }
}
