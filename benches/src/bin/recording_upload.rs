//! `recording_upload`: how fast recorded segments reach an S3-compatible
//! store through the spool, against plain S3 PUTs of the same objects.
//!
//! moto's S3 server (PyPI `moto[server]`) is started on a free loopback
//! port. The same N objects of S bytes (segment-sized, 1 MiB by default)
//! are uploaded twice, each to its own prefix:
//!
//! - **baseline: direct PUTs**: `S3Store::put` one object after another,
//!   as a recorder without a spool would (and as the spool's uploader
//!   itself does, one at a time);
//! - **ferrocast: spool**: every object enqueued on the spool (written to
//!   local disk, the only cost the recorder's writer pays) while the
//!   uploader sends them to the store; measured from the first enqueue to
//!   the spool drained.
//!
//! Reported: MB/s and objects/s of both, and the spool's enqueue rate
//! alone. moto is a Python server: the store is the bottleneck here, so
//! the figures compare the two paths on the same store, not S3 itself.
//!
//! ```text
//! cargo run --release -p ferrocast-benches --bin recording_upload -- --objects 200 --size 1048576
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use ferrocast_storage::{ObjectStore, S3Options, S3Store, Spool, SpoolConfig};
use ferrocast_testkit::S3Server;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Recorded segments to an S3-compatible store: spool vs direct PUTs")]
struct Args {
    /// Objects uploaded per path.
    #[arg(long, default_value_t = 200)]
    objects: usize,
    /// Bytes per object.
    #[arg(long, default_value_t = 1 << 20)]
    size: usize,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(args))
}

fn rate(bytes: usize, objects: usize, took: Duration) -> serde_json::Value {
    let seconds = took.as_secs_f64().max(1e-9);
    serde_json::json!({
        "seconds": seconds,
        "mb_per_s": bytes as f64 / seconds / 1e6,
        "objects_per_s": objects as f64 / seconds,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server = S3Server::start().context("moto's S3 server is not installed")?;
    let store = S3Store::new(S3Options {
        endpoint: Some(server.endpoint()),
        path_style: true,
        credentials: Some(("bench".into(), "bench-secret".into())),
        ..S3Options::new("bench", "us-east-1")
    })
    .await?;
    store.create_bucket().await?;
    let body = Bytes::from(
        (0..args.size)
            .map(|i| (i as u8).wrapping_mul(31))
            .collect::<Vec<u8>>(),
    );
    let total = args.size * args.objects;

    let started = Instant::now();
    for i in 0..args.objects {
        store
            .put(&format!("direct/s{i:06}.m4s"), body.clone())
            .await?;
    }
    let direct = started.elapsed();

    let scratch = tempfile::tempdir()?;
    let spool = Spool::open(SpoolConfig {
        dir: scratch.path().join("spool"),
        max_bytes: (total as u64).saturating_mul(2),
    })
    .await?;
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let _uploader = spool.start_uploader(store.clone());
    let started = Instant::now();
    for i in 0..args.objects {
        spool
            .enqueue(&format!("spooled/s{i:06}.m4s"), body.clone())
            .await?;
    }
    let enqueued = started.elapsed();
    spool.drained().await;
    let spooled = started.elapsed();
    let stored = store.list("spooled/").await?.len();
    anyhow::ensure!(
        stored == args.objects,
        "{stored} of {} objects stored",
        args.objects
    );

    let json = serde_json::json!({
        "bench": "recording_upload",
        "objects": args.objects,
        "object_bytes": args.size,
        "store": "moto 5.1 on loopback",
        "baseline_direct_put": rate(total, args.objects, direct),
        "ferrocast_spool": rate(total, args.objects, spooled),
        "spool_enqueue_only": rate(total, args.objects, enqueued),
    });
    if !args.json {
        println!(
            "recording_upload: {} objects of {} B to moto on loopback",
            args.objects, args.size
        );
        for (name, took) in [
            ("baseline: direct PUTs, one at a time", direct),
            ("ferrocast: spool, enqueue to drained", spooled),
            ("spool enqueue alone (the writer's cost)", enqueued),
        ] {
            println!(
                "{name:<44} {:>8.1} MB/s {:>8.1} objects/s",
                total as f64 / took.as_secs_f64() / 1e6,
                args.objects as f64 / took.as_secs_f64()
            );
        }
    }
    println!("{json}");
    Ok(())
}
