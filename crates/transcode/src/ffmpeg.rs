//! The few things `ffmpeg-next` does not wrap safely: library set-up with
//! FFmpeg's log routed into `tracing`, codec extradata, a new reference to a
//! frame's buffers (`ffmpeg-next`'s `Clone` copies the pixels), and a `Send`
//! wrapper for the swscale context. Every `unsafe` block of the FFmpeg glue
//! lives here.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Once;

use ff::ffi;
use ffmpeg_next as ff;

static INIT: Once = Once::new();

/// Initialises FFmpeg once per process and sends its log to `tracing`
/// (target `ffmpeg`): errors as `error`, warnings as `warn`, FFmpeg's info
/// (encoder statistics and the like) as `debug`. Nothing reaches stderr.
pub fn init() {
    INIT.call_once(|| {
        // Registers nothing on FFmpeg 5+ but keeps older builds working.
        if let Err(e) = ff::init() {
            tracing::error!(target: "ffmpeg", error = %e, "FFmpeg initialisation failed");
        }
        ff::util::log::set_level(ff::util::log::Level::Info);
        install_log_callback();
    });
}

#[cfg(target_arch = "x86_64")]
fn install_log_callback() {
    // SAFETY: `log_callback` has exactly the signature FFmpeg's bindings
    // declare for this target, never unwinds, and only reads its arguments
    // for the duration of the call. Setting the callback is a plain store.
    unsafe { ffi::av_log_set_callback(Some(log_callback)) };
}

/// On other targets `va_list` has another ABI shape; FFmpeg's own callback
/// stays, quietened to errors.
#[cfg(not(target_arch = "x86_64"))]
fn install_log_callback() {
    ff::util::log::set_level(ff::util::log::Level::Error);
}

#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn log_callback(
    avcl: *mut c_void,
    level: c_int,
    fmt: *const c_char,
    vl: *mut ffi::__va_list_tag,
) {
    // SAFETY: a plain getter of a global int.
    if level > unsafe { ffi::av_log_get_level() } {
        return;
    }
    let mut line = [0 as c_char; 1024];
    let mut print_prefix: c_int = 1;
    // SAFETY: `avcl`, `fmt` and `vl` come straight from FFmpeg's `av_vlog`,
    // which is what `av_log_format_line2` expects; `line` is a writable
    // buffer of the length given, and FFmpeg NUL-terminates what it writes
    // (truncating to fit).
    let written = unsafe {
        ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            vl,
            line.as_mut_ptr(),
            line.len() as c_int,
            &mut print_prefix,
        )
    };
    if written < 0 {
        return;
    }
    // SAFETY: the buffer is NUL-terminated (zero-initialised, and FFmpeg
    // terminates within its length).
    let text = unsafe { CStr::from_ptr(line.as_ptr()) }.to_string_lossy();
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    match level {
        l if l <= ffi::AV_LOG_ERROR => tracing::error!(target: "ffmpeg", "{text}"),
        l if l <= ffi::AV_LOG_WARNING => tracing::warn!(target: "ffmpeg", "{text}"),
        l if l <= ffi::AV_LOG_INFO => tracing::debug!(target: "ffmpeg", "{text}"),
        _ => tracing::trace!(target: "ffmpeg", "{text}"),
    }
}

/// Gives an unopened codec context its extradata (for a decoder: Annex-B
/// parameter sets, or Opus's `OpusHead`).
pub fn set_extradata(ctx: &mut ff::codec::Context, data: &[u8]) {
    let padding = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: `av_mallocz` returns zeroed memory of the size asked for, or
    // null. We copy `data.len()` bytes into a buffer of `len + padding`
    // (FFmpeg requires the zeroed padding), and hand ownership to the
    // context, which frees it with `av_free` in `avcodec_free_context`. Any
    // previous extradata is freed first so nothing leaks. The context is
    // not opened yet, so no codec is reading the field concurrently.
    unsafe {
        let raw = ctx.as_mut_ptr();
        let buf = ffi::av_mallocz(data.len() + padding) as *mut u8;
        if buf.is_null() {
            return;
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        if !(*raw).extradata.is_null() {
            ffi::av_free((*raw).extradata as *mut c_void);
        }
        (*raw).extradata = buf;
        (*raw).extradata_size = data.len() as c_int;
    }
}

/// A new frame referring to `src`'s picture buffers (FFmpeg refcounts
/// them; no pixel is copied) with `src`'s properties, which the new frame
/// may then change (PTS, picture type) without touching `src`.
pub fn share_frame(src: &ff::util::frame::Video) -> Result<ff::util::frame::Video, ff::Error> {
    let mut out = ff::util::frame::Video::empty();
    // SAFETY: `out` was just made by `av_frame_alloc` and holds no data,
    // which is what `av_frame_ref` requires of its destination; `src` is a
    // valid frame that is only read here (callers share it read-only
    // behind an `Arc`). `av_frame_ref` takes a new reference on each of
    // `src`'s buffers (atomic refcounts, safe across threads) or, for a
    // frame without refcounted buffers, allocates and copies; it writes
    // only to `out`. On failure `out` is left clean and is freed by its
    // `Drop` (`av_frame_free`).
    let ret = unsafe { ffi::av_frame_ref(out.as_mut_ptr(), src.as_ptr()) };
    if ret < 0 {
        return Err(ff::Error::from(ret));
    }
    Ok(out)
}

/// A swscale context that may move between threads.
pub struct Scaler(pub ff::software::scaling::Context);

// SAFETY: an `SwsContext` has no thread affinity: it is plain heap state
// that FFmpeg reads and writes only inside calls made with it. `Scaler` is
// only used through `&mut` (never shared), so moving it to another thread
// between calls is sound; `ffmpeg-next` leaves out the impl only because it
// holds a raw pointer.
unsafe impl Send for Scaler {}
