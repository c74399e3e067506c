//! GPU discovery and the choice between NVENC and the CPU encoders.
//!
//! Three questions, answered in order:
//!
//! 1. **Is there a GPU?** [`discover`] asks the CUDA driver (through
//!    cudarc, loaded at run time) for its devices. A machine without the
//!    driver gets [`Discovery::NoDriver`], not a panic.
//! 2. **Can it encode?** A GPU is not an encoder: the NVIDIA A100, H100 and
//!    H200 have no NVENC engine at all. [`select`] decides by opening an
//!    encoder session through an [`EncoderProbe`] (the real one opens
//!    `h264_nvenc` through FFmpeg; tests fake it) and returns an
//!    [`EncoderChoice`] with a human-readable reason.
//! 3. **Is there room?** Consumer GeForce cards limit concurrent NVENC
//!    sessions per system. [`NvencBudget`] counts sessions per stream (one
//!    per encoded rung); [`assign`] gives a stream NVENC while the budget
//!    lasts and the CPU encoders after that, stream by stream.
//!
//! ```
//! use ferrocast_transcode::gpu::{assign, discover, select, Discovery, EncoderProbe, NvencBudget};
//! use ferrocast_transcode::ladder::VideoCodec;
//!
//! struct NeverOpens;
//! impl EncoderProbe for NeverOpens {
//!     fn open_nvenc(&self, _: VideoCodec, _: u32) -> Result<(), String> {
//!         Err("not tried".into())
//!     }
//!     fn open_cpu(&self, _: VideoCodec) -> Result<(), String> {
//!         Err("not tried".into())
//!     }
//! }
//! let discovery = discover(); // Discovery::NoDriver on a machine without NVIDIA's driver
//! let choice = select(&discovery, &NeverOpens, &[VideoCodec::H264]);
//! let budget = NvencBudget::new(8);
//! let stream = assign("live/cam1", &choice, &budget, 3);
//! if matches!(discovery, Discovery::NoDriver) {
//!     assert!(!stream.choice.is_gpu());
//! }
//! println!("{}", stream.choice.reason);
//! ```
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod cuda;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ladder::VideoCodec;
use crate::plan::SourceCodec;

/// One CUDA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// CUDA ordinal (FFmpeg's `gpu` option for NVENC).
    pub ordinal: u32,
    /// Marketing name, e.g. `NVIDIA GeForce RTX 4090`.
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory: u64,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
}

/// What the CUDA driver says about this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `libcuda.so.1` is not installed (or not loadable): no NVIDIA driver.
    NoDriver,
    /// The driver is installed but failed (no device node in a container,
    /// a driver/library version mismatch, ...).
    DriverError(String),
    /// The driver works and sees no device.
    NoDevices,
    /// The devices found.
    Devices(Vec<GpuDevice>),
}

impl fmt::Display for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discovery::NoDriver => f.write_str("no NVIDIA driver (libcuda.so.1 not found)"),
            Discovery::DriverError(e) => write!(f, "NVIDIA driver present but failing: {e}"),
            Discovery::NoDevices => f.write_str("NVIDIA driver present, no CUDA device"),
            Discovery::Devices(devices) => {
                for (i, d) in devices.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "GPU {} {} ({} MiB, sm_{}{})",
                        d.ordinal,
                        d.name,
                        d.total_memory >> 20,
                        d.compute_capability.0,
                        d.compute_capability.1
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Looks for CUDA devices. Never panics: a machine without the NVIDIA
/// driver gets [`Discovery::NoDriver`].
pub fn discover() -> Discovery {
    cuda::query()
}

/// Opens (and closes again) an NVENC encoder session, to learn whether a
/// device can encode. Behind a trait so that tests can fake every outcome.
pub trait EncoderProbe {
    /// Try to open the NVENC encoder for `codec` on CUDA device `ordinal`;
    /// `Err` carries FFmpeg's reason.
    fn open_nvenc(&self, codec: VideoCodec, ordinal: u32) -> Result<(), String>;

    /// Try to open the CPU encoder for `codec` (libx264, libx265); `Err`
    /// carries the reason (an FFmpeg built without it, say).
    fn open_cpu(&self, codec: VideoCodec) -> Result<(), String>;
}

/// The transcoder has no encoder it may use; the reason, for the log and
/// `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no encoder: {0}")]
pub struct NoEncoder(pub String);

/// The start-up self-test of the encoders `choice` names, for the ladder's
/// `codecs`: under `nvenc_required` (`transcode.nvenc = "require"`, a GPU
/// node) a CPU choice is a failure, with the reason NVENC did not open;
/// a CPU choice must open each CPU encoder. An NVENC choice was opened by
/// [`select`] already.
pub fn self_test(
    choice: EncoderChoice,
    nvenc_required: bool,
    probe: &dyn EncoderProbe,
    codecs: &[VideoCodec],
) -> Result<EncoderChoice, NoEncoder> {
    if choice.is_gpu() {
        return Ok(choice);
    }
    if nvenc_required {
        return Err(NoEncoder(format!(
            "NVENC required (transcode.nvenc = \"require\") and none opened: {}",
            choice
                .reason
                .replace("; encoding on the CPU", "")
                .replace(": encoding on the CPU", "")
        )));
    }
    for &codec in codecs {
        if let Err(e) = probe.open_cpu(codec) {
            return Err(NoEncoder(format!(
                "{} failed to open: {e}",
                choice.encoder_name(codec)
            )));
        }
    }
    Ok(choice)
}

/// Where a stream's video is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// NVENC on CUDA device `ordinal` (decoding on its NVDEC via cuvid).
    Nvenc {
        /// CUDA ordinal.
        ordinal: u32,
    },
    /// libx264 / libx265 and FFmpeg's software decoders.
    Cpu,
}

/// The encoder family chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    /// GPU or CPU.
    pub backend: Backend,
    /// Human-readable reason, for the log and the status API.
    pub reason: String,
}

impl EncoderChoice {
    /// The CPU encoders, for `reason`.
    pub fn cpu(reason: impl Into<String>) -> Self {
        EncoderChoice {
            backend: Backend::Cpu,
            reason: reason.into(),
        }
    }

    /// True for NVENC.
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Nvenc { .. })
    }

    /// FFmpeg's name of the encoder for `codec`.
    pub fn encoder_name(&self, codec: VideoCodec) -> &'static str {
        match (self.backend, codec) {
            (Backend::Nvenc { .. }, VideoCodec::H264) => "h264_nvenc",
            (Backend::Nvenc { .. }, VideoCodec::Hevc) => "hevc_nvenc",
            (Backend::Cpu, VideoCodec::H264) => "libx264",
            (Backend::Cpu, VideoCodec::Hevc) => "libx265",
        }
    }

    /// FFmpeg's name of the decoder for `codec` (`h264_cuvid`,
    /// `hevc_cuvid` on a GPU, FFmpeg's native software decoders otherwise;
    /// `libdav1d` for AV1 on either).
    pub fn decoder_name(&self, codec: SourceCodec) -> &'static str {
        match (self.backend, codec) {
            (Backend::Nvenc { .. }, SourceCodec::H264) => "h264_cuvid",
            (Backend::Nvenc { .. }, SourceCodec::Hevc) => "hevc_cuvid",
            (Backend::Cpu, SourceCodec::H264) => "h264",
            (Backend::Cpu, SourceCodec::Hevc) => "hevc",
            // libdav1d everywhere: NVDEC's AV1 support depends on the GPU
            // generation, and an `av1_cuvid` that fails to open would take
            // NVENC away from the whole stream (frames are scaled in
            // software anyway).
            (_, SourceCodec::Av1) => "libdav1d",
        }
    }
}

/// Chooses NVENC on the first device where an encoder for every codec in
/// `codecs` opens, and the CPU encoders otherwise, saying why.
pub fn select(
    discovery: &Discovery,
    probe: &dyn EncoderProbe,
    codecs: &[VideoCodec],
) -> EncoderChoice {
    let devices = match discovery {
        Discovery::Devices(devices) => devices,
        other => return EncoderChoice::cpu(format!("{other}: encoding on the CPU")),
    };
    let mut failures = Vec::new();
    'devices: for device in devices {
        for &codec in codecs {
            let name = EncoderChoice {
                backend: Backend::Nvenc {
                    ordinal: device.ordinal,
                },
                reason: String::new(),
            }
            .encoder_name(codec);
            if let Err(e) = probe.open_nvenc(codec, device.ordinal) {
                failures.push(format!(
                    "GPU {} {}: {name} failed to open: {e}",
                    device.ordinal, device.name
                ));
                continue 'devices;
            }
        }
        return EncoderChoice {
            backend: Backend::Nvenc {
                ordinal: device.ordinal,
            },
            reason: format!("GPU {} {}: NVENC opened", device.ordinal, device.name),
        };
    }
    EncoderChoice::cpu(format!(
        "{}; encoding on the CPU (data-centre GPUs such as the A100, H100 and H200 have no NVENC engine)",
        failures.join("; ")
    ))
}

pub use ferrocast_config::transcode::DEFAULT_NVENC_SESSIONS;

/// Counts NVENC sessions in use, per stream, against a limit. Cheap to
/// clone; clones share the count.
#[derive(Debug, Clone)]
pub struct NvencBudget {
    inner: Arc<Mutex<BudgetState>>,
}

#[derive(Debug)]
struct BudgetState {
    limit: u32,
    in_use: u32,
    per_stream: BTreeMap<String, u32>,
}

/// The budget had no room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "NVENC session budget exhausted: {in_use} of {limit} sessions in use, {wanted} more wanted"
)]
pub struct BudgetExhausted {
    /// Sessions in use.
    pub in_use: u32,
    /// The limit.
    pub limit: u32,
    /// Sessions asked for.
    pub wanted: u32,
}

impl NvencBudget {
    /// A budget of `limit` concurrent sessions.
    pub fn new(limit: u32) -> Self {
        NvencBudget {
            inner: Arc::new(Mutex::new(BudgetState {
                limit,
                in_use: 0,
                per_stream: BTreeMap::new(),
            })),
        }
    }

    /// Takes `sessions` for `stream`, all or none.
    pub fn try_acquire(&self, stream: &str, sessions: u32) -> Result<NvencLease, BudgetExhausted> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions == 0 || state.in_use.saturating_add(sessions) > state.limit {
            return Err(BudgetExhausted {
                in_use: state.in_use,
                limit: state.limit,
                wanted: sessions,
            });
        }
        state.in_use += sessions;
        *state.per_stream.entry(stream.to_owned()).or_default() += sessions;
        Ok(NvencLease {
            budget: self.clone(),
            stream: stream.to_owned(),
            sessions,
        })
    }

    /// Sessions in use and the limit.
    pub fn usage(&self) -> (u32, u32) {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (state.in_use, state.limit)
    }

    /// Sessions held per stream.
    pub fn per_stream(&self) -> Vec<(String, u32)> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .per_stream
            .iter()
            .map(|(k, &v)| (k.clone(), v))
            .collect()
    }
}

/// Sessions held for one stream; given back when dropped.
#[derive(Debug)]
pub struct NvencLease {
    budget: NvencBudget,
    stream: String,
    sessions: u32,
}

impl NvencLease {
    /// Sessions held.
    pub fn sessions(&self) -> u32 {
        self.sessions
    }
}

impl Drop for NvencLease {
    fn drop(&mut self) {
        let mut state = self
            .budget
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.in_use = state.in_use.saturating_sub(self.sessions);
        if let Some(n) = state.per_stream.get_mut(&self.stream) {
            *n = n.saturating_sub(self.sessions);
            if *n == 0 {
                state.per_stream.remove(&self.stream);
            }
        }
    }
}

/// One stream's encoders: the choice, and the NVENC sessions held for it.
#[derive(Debug)]
pub struct StreamEncoders {
    /// GPU or CPU, and why.
    pub choice: EncoderChoice,
    /// Held while the stream encodes on NVENC.
    pub lease: Option<NvencLease>,
}

impl StreamEncoders {
    /// CPU encoding, for `reason`, holding nothing.
    pub fn cpu(reason: impl Into<String>) -> Self {
        StreamEncoders {
            choice: EncoderChoice::cpu(reason),
            lease: None,
        }
    }

    /// Give up NVENC (after an encoder failed to open): release the
    /// sessions and encode on the CPU.
    pub fn fall_back_to_cpu(&mut self, why: &str) {
        self.lease = None;
        self.choice = EncoderChoice::cpu(format!("{why}; encoding on the CPU"));
    }
}

/// The encoders for one stream of `rungs` encoded rungs: NVENC if the
/// machine's `choice` is NVENC and `budget` has `rungs` sessions left, the
/// CPU otherwise.
pub fn assign(
    stream: &str,
    choice: &EncoderChoice,
    budget: &NvencBudget,
    rungs: u32,
) -> StreamEncoders {
    if !choice.is_gpu() || rungs == 0 {
        return StreamEncoders {
            choice: choice.clone(),
            lease: None,
        };
    }
    match budget.try_acquire(stream, rungs) {
        Ok(lease) => StreamEncoders {
            choice: choice.clone(),
            lease: Some(lease),
        },
        Err(e) => StreamEncoders::cpu(format!("{e}; encoding on the CPU")),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Opens NVENC for the codecs and devices listed, fails otherwise.
    struct FakeProbe {
        opens: Vec<(VideoCodec, u32)>,
        tried: RefCell<Vec<(VideoCodec, u32)>>,
    }

    impl FakeProbe {
        fn new(opens: &[(VideoCodec, u32)]) -> Self {
            FakeProbe {
                opens: opens.to_vec(),
                tried: RefCell::new(Vec::new()),
            }
        }
    }

    impl EncoderProbe for FakeProbe {
        fn open_nvenc(&self, codec: VideoCodec, ordinal: u32) -> Result<(), String> {
            self.tried.borrow_mut().push((codec, ordinal));
            if self.opens.contains(&(codec, ordinal)) {
                Ok(())
            } else {
                Err("Operation not permitted".into())
            }
        }

        fn open_cpu(&self, codec: VideoCodec) -> Result<(), String> {
            match codec {
                VideoCodec::H264 => Ok(()),
                VideoCodec::Hevc => Err("Encoder not found".into()),
            }
        }
    }

    fn gpu(ordinal: u32, name: &str) -> GpuDevice {
        GpuDevice {
            ordinal,
            name: name.into(),
            total_memory: 24 << 30,
            compute_capability: (8, 9),
        }
    }

    #[test]
    fn discovery_without_a_driver_is_clean() {
        // This machine (and CI) has no NVIDIA driver; discovery must say so
        // rather than panic inside cudarc. On a GPU machine it lists
        // devices instead.
        let d = discover();
        match &d {
            Discovery::NoDriver => {
                let c = select(
                    &d,
                    &FakeProbe::new(&[(VideoCodec::H264, 0)]),
                    &[VideoCodec::H264],
                );
                assert_eq!(c.backend, Backend::Cpu);
                assert!(c.reason.contains("no NVIDIA driver"), "{}", c.reason);
            }
            Discovery::Devices(devices) => assert!(!devices.is_empty()),
            Discovery::DriverError(_) | Discovery::NoDevices => {}
        }
        // Twice is as good as once.
        assert_eq!(discover(), d);
    }

    #[test]
    fn no_gpu_means_cpu_without_probing() {
        let probe = FakeProbe::new(&[(VideoCodec::H264, 0)]);
        for d in [
            Discovery::NoDriver,
            Discovery::NoDevices,
            Discovery::DriverError("CUDA_ERROR_NO_DEVICE".into()),
        ] {
            let c = select(&d, &probe, &[VideoCodec::H264]);
            assert_eq!(c.backend, Backend::Cpu);
            assert_eq!(c.encoder_name(VideoCodec::H264), "libx264");
            assert_eq!(c.encoder_name(VideoCodec::Hevc), "libx265");
            assert_eq!(c.decoder_name(SourceCodec::Hevc), "hevc");
        }
        assert!(probe.tried.borrow().is_empty());
    }

    #[test]
    fn gpu_without_nvenc_engine_falls_back() {
        let d = Discovery::Devices(vec![gpu(0, "NVIDIA H200")]);
        let c = select(&d, &FakeProbe::new(&[]), &[VideoCodec::H264]);
        assert_eq!(c.backend, Backend::Cpu);
        assert!(c.reason.contains("NVIDIA H200"), "{}", c.reason);
        assert!(
            c.reason.contains("h264_nvenc failed to open"),
            "{}",
            c.reason
        );
        assert!(c.reason.contains("Operation not permitted"), "{}", c.reason);
    }

    #[test]
    fn picks_the_first_device_that_encodes_every_codec() {
        let d = Discovery::Devices(vec![gpu(0, "NVIDIA H100"), gpu(1, "NVIDIA L4")]);
        let probe = FakeProbe::new(&[(VideoCodec::H264, 1), (VideoCodec::Hevc, 1)]);
        let c = select(&d, &probe, &[VideoCodec::H264, VideoCodec::Hevc]);
        assert_eq!(c.backend, Backend::Nvenc { ordinal: 1 });
        assert!(c.reason.contains("NVIDIA L4"));
        assert_eq!(c.encoder_name(VideoCodec::H264), "h264_nvenc");
        assert_eq!(c.encoder_name(VideoCodec::Hevc), "hevc_nvenc");
        assert_eq!(c.decoder_name(SourceCodec::H264), "h264_cuvid");
        assert_eq!(c.decoder_name(SourceCodec::Hevc), "hevc_cuvid");
        // H264 opened on device 1 but HEVC did not on device 0: not enough.
        let probe = FakeProbe::new(&[(VideoCodec::H264, 0), (VideoCodec::H264, 1)]);
        let c = select(&d, &probe, &[VideoCodec::H264, VideoCodec::Hevc]);
        assert_eq!(c.backend, Backend::Cpu);
        assert!(c.reason.contains("hevc_nvenc failed"), "{}", c.reason);
    }

    #[test]
    fn budget_is_per_stream_and_falls_back_when_exhausted() {
        let choice = EncoderChoice {
            backend: Backend::Nvenc { ordinal: 0 },
            reason: "GPU 0: NVENC opened".into(),
        };
        let budget = NvencBudget::new(DEFAULT_NVENC_SESSIONS);
        let a = assign("a", &choice, &budget, 3);
        let b = assign("b", &choice, &budget, 3);
        assert!(a.choice.is_gpu() && b.choice.is_gpu());
        assert_eq!(budget.usage(), (6, 8));
        // Three more do not fit in 8: this stream goes to the CPU.
        let c = assign("c", &choice, &budget, 3);
        assert!(!c.choice.is_gpu());
        assert!(c.lease.is_none());
        assert!(c.choice.reason.contains("6 of 8"), "{}", c.choice.reason);
        // Two do.
        let d = assign("d", &choice, &budget, 2);
        assert!(d.choice.is_gpu());
        assert_eq!(
            budget.per_stream(),
            [("a".into(), 3), ("b".into(), 3), ("d".into(), 2)]
        );
        // A stream ending gives its sessions back.
        drop(a);
        assert_eq!(budget.usage(), (5, 8));
        let mut e = assign("e", &choice, &budget, 3);
        assert!(e.choice.is_gpu());
        // An encoder that fails to open at stream start releases the lease.
        e.fall_back_to_cpu("h264_nvenc failed to open: out of memory");
        assert!(!e.choice.is_gpu());
        assert_eq!(budget.usage(), (5, 8));
        // A zero budget (NVENC disabled) never grants.
        let none = NvencBudget::new(0);
        assert!(!assign("x", &choice, &none, 1).choice.is_gpu());
        // The CPU choice passes through untouched.
        let cpu = EncoderChoice::cpu("no NVIDIA driver");
        let s = assign("y", &cpu, &budget, 3);
        assert_eq!(s.choice, cpu);
        assert_eq!(budget.usage(), (5, 8));
    }

    #[test]
    fn self_test_refuses_the_cpu_where_nvenc_is_required() {
        let h100 = Discovery::Devices(vec![gpu(0, "NVIDIA H100 80GB HBM3")]);
        let probe = FakeProbe::new(&[]);
        let choice = select(&h100, &probe, &[VideoCodec::H264]);
        let err = self_test(choice.clone(), true, &probe, &[VideoCodec::H264]).unwrap_err();
        assert!(
            err.to_string().starts_with("no encoder: NVENC required"),
            "{err}"
        );
        assert!(err.0.contains("h264_nvenc failed to open"), "{err}");
        // Without the requirement the same machine encodes on the CPU.
        let cpu = self_test(choice, false, &probe, &[VideoCodec::H264]).unwrap();
        assert_eq!(cpu.backend, Backend::Cpu);
    }

    #[test]
    fn self_test_opens_every_cpu_encoder_of_the_ladder() {
        let probe = FakeProbe::new(&[]);
        let choice = EncoderChoice::cpu("no NVIDIA driver");
        let err = self_test(
            choice.clone(),
            false,
            &probe,
            &[VideoCodec::H264, VideoCodec::Hevc],
        )
        .unwrap_err();
        assert_eq!(err.0, "libx265 failed to open: Encoder not found");
        assert!(self_test(choice, false, &probe, &[VideoCodec::H264]).is_ok());
    }

    #[test]
    fn self_test_keeps_an_nvenc_choice() {
        let l4 = Discovery::Devices(vec![gpu(0, "NVIDIA L4")]);
        let probe = FakeProbe::new(&[(VideoCodec::H264, 0)]);
        let choice = select(&l4, &probe, &[VideoCodec::H264]);
        assert!(choice.is_gpu());
        assert_eq!(
            self_test(choice.clone(), true, &probe, &[VideoCodec::H264]),
            Ok(choice)
        );
    }
}
