//! Each rung's scale and encode on a thread of its own.
//!
//! The transcoder's thread decodes and decides keyframes; every decoded
//! frame is handed, behind an [`Arc`] (no pixel copy), to one worker thread
//! per rung that decimates, scales and encodes it. Rungs thus encode in
//! parallel with each other and with the decoding of the next frame.
//!
//! Flow control is by credit, so nothing here can deadlock or grow:
//!
//! - a rung has at most [`RUNG_QUEUE_FRAMES`] jobs in flight (sent and
//!   whose report the transcoder has not read yet). The job queue has that
//!   capacity, so sending never blocks; when a rung is out of credit the
//!   transcoder's thread blocks reading reports (which is what returns
//!   credit) — a rung that falls behind slows `push` down, and the service
//!   above drops whole GOPs on its own bounded queue;
//! - every job gets exactly one report, on one queue shared by all rungs
//!   whose capacity covers every credit of every rung, so a worker never
//!   blocks on it either;
//! - reports of one rung arrive in the order of its jobs, so each rung's
//!   output stays in order.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferrocast_media::{AccessUnit, Time90k, TrackInfo};
use ff::util::frame;
use ffmpeg_next as ff;

use super::video::{Counters, RungEncoder};
use crate::error::TranscodeError;

/// Jobs one rung may have in flight. Each pins one decoded frame (1.4 MB
/// at 720p), and when every rung is this far behind, `push` blocks: the
/// bound on both memory and the delay a backlog can add.
pub const RUNG_QUEUE_FRAMES: usize = 3;

/// What a rung worker is asked to do.
pub(crate) enum Job {
    /// Encode one decoded frame (shared with the other rungs).
    Frame {
        /// The decoded picture, stamped and with its picture type cleared.
        frame: Arc<frame::Video>,
        /// Its source PTS.
        pts: Time90k,
        /// Code it as an IDR frame.
        keyframe: bool,
        /// The timeline broke before this frame: forget frame-rate state.
        reset: bool,
    },
    /// Drain the encoder (end of input); the worker ends afterwards.
    Finish,
}

/// What a worker says after each job.
pub(crate) struct Report {
    /// Index into the plan's rungs.
    pub(crate) rung: usize,
    /// What happened.
    pub(crate) body: ReportBody,
}

/// The outcome of one job.
pub(crate) enum ReportBody {
    /// The job was done.
    Done {
        /// Access units out of the encoder, in decode order.
        units: Vec<AccessUnit>,
        /// The rung's track, when it changed with this job (parameter sets
        /// on a keyframe).
        track: Option<TrackInfo>,
        /// The rung's counters after this job.
        counters: Counters,
        /// Wall time the job took on the worker.
        busy: Duration,
        /// The job was a frame after a discontinuity.
        reset: bool,
        /// The job was [`Job::Finish`]: nothing more comes from this rung.
        finished: bool,
    },
    /// The job failed; the worker has stopped.
    Failed(TranscodeError),
    /// The worker stopped without a report for its job (it panicked).
    Gone,
}

/// The transcoder's side of one rung worker.
pub(crate) struct RungWorker {
    name: String,
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Jobs sent whose report has not been read.
    pub(crate) in_flight: usize,
}

/// Starts one worker per rung encoder; returns them and the shared report
/// queue.
pub(crate) fn spawn(
    encoders: Vec<RungEncoder>,
) -> Result<(Vec<RungWorker>, Receiver<Report>), TranscodeError> {
    // Every credit of every rung, plus one `Gone` each.
    let (report_tx, reports) = sync_channel(encoders.len() * (RUNG_QUEUE_FRAMES + 1));
    let mut workers = Vec::with_capacity(encoders.len());
    for (rung, encoder) in encoders.into_iter().enumerate() {
        let name = encoder.plan.name.clone();
        let (jobs_tx, jobs) = sync_channel(RUNG_QUEUE_FRAMES);
        let reports = report_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rung-{name}"))
            .spawn(move || run(rung, encoder, &jobs, reports))
            .map_err(|e| TranscodeError::Worker {
                rung: name.clone(),
                what: format!("cannot start its thread: {e}"),
            })?;
        workers.push(RungWorker {
            name,
            jobs: Some(jobs_tx),
            thread: Some(thread),
            in_flight: 0,
        });
    }
    Ok((workers, reports))
}

impl RungWorker {
    /// True while jobs can be sent (not shed, finished or failed).
    pub(crate) fn is_open(&self) -> bool {
        self.jobs.is_some()
    }

    /// True if a job can be sent without exceeding the credit.
    pub(crate) fn has_credit(&self) -> bool {
        self.in_flight < RUNG_QUEUE_FRAMES
    }

    /// Sends a job; the caller checked [`Self::has_credit`], so this never
    /// blocks.
    pub(crate) fn send(&mut self, job: Job) -> Result<(), TranscodeError> {
        let Some(jobs) = &self.jobs else {
            return Err(self.gone("is closed"));
        };
        match jobs.try_send(job) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => Err(self.gone("queue full")),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                self.jobs = None;
                Err(self.gone("stopped"))
            }
        }
    }

    /// No more jobs: the worker ends once its queue is empty.
    pub(crate) fn close(&mut self) {
        self.jobs = None;
    }

    fn gone(&self, what: &str) -> TranscodeError {
        TranscodeError::Worker {
            rung: self.name.clone(),
            what: what.to_owned(),
        }
    }

    /// The error for a [`ReportBody::Gone`].
    pub(crate) fn panicked(&self) -> TranscodeError {
        self.gone("worker thread stopped unexpectedly")
    }
}

impl Drop for RungWorker {
    fn drop(&mut self) {
        self.jobs = None;
        // The worker finishes the job in hand and drops its encoder (and
        // any NVENC session) before the stream's session budget is given
        // back. It never blocks on the report queue (see the module docs).
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads reports: without waiting (`None`), or waiting until `deadline`.
/// `None` back when there is none by then.
pub(crate) fn next_report(reports: &Receiver<Report>, deadline: Option<Instant>) -> Option<Report> {
    match deadline {
        None => reports.try_recv().ok(),
        Some(deadline) => reports
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok(),
    }
}

/// Sends [`ReportBody::Gone`] if the worker unwinds before its last report.
struct GoneGuard {
    rung: usize,
    reports: SyncSender<Report>,
    armed: bool,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.reports.try_send(Report {
                rung: self.rung,
                body: ReportBody::Gone,
            });
        }
    }
}

/// The worker thread's loop.
fn run(rung: usize, mut encoder: RungEncoder, jobs: &Receiver<Job>, reports: SyncSender<Report>) {
    let mut guard = GoneGuard {
        rung,
        reports: reports.clone(),
        armed: true,
    };
    let mut sent_track: Option<TrackInfo> = None;
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let mut units = Vec::new();
        let (result, reset, finished) = match job {
            Job::Frame {
                frame,
                pts,
                keyframe,
                reset,
            } => {
                if reset {
                    encoder.reset_timing();
                }
                (
                    encoder.push(&frame, pts, keyframe, &mut units),
                    reset,
                    false,
                )
            }
            Job::Finish => (encoder.finish(&mut units), false, true),
        };
        let body = match result {
            Ok(()) => {
                let track = (encoder.track != sent_track).then(|| encoder.track.clone());
                if let Some(track) = &track {
                    sent_track.clone_from(track);
                }
                ReportBody::Done {
                    units,
                    track: track.flatten(),
                    counters: encoder.counters,
                    busy: started.elapsed(),
                    reset,
                    finished,
                }
            }
            Err(e) => ReportBody::Failed(e),
        };
        let stop = finished || matches!(body, ReportBody::Failed(_));
        if reports.send(Report { rung, body }).is_err() || stop {
            break;
        }
    }
    guard.armed = false;
}
