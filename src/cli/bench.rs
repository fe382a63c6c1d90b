//! Benchmarks that print figures (never assert them).

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::Instant;

use crate::image::{self, MetadataImage};
use crate::record::checkpoint::{write_checkpoint, CheckpointMeta, SnapshotId};

/// `kraftd bench snapshot` arguments.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Topics in the synthetic image.
    #[arg(long, default_value_t = 10_000)]
    pub topics: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 100)]
    pub partitions_per_topic: usize,
    /// Registered brokers.
    #[arg(long, default_value_t = 100)]
    pub brokers: usize,
    /// Replicas per partition.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: usize,
    /// Keep the checkpoint in this directory (otherwise a temporary one is removed).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// Peak resident set size of this process in bytes, from /proc (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak RSS counter so the next phase is measured on its own (Linux >= 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_string(),
        |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

/// Builds a synthetic image, writes it as a checkpoint, reads it back and prints figures.
pub fn snapshot(args: &SnapshotArgs) -> anyhow::Result<()> {
    if args.replication_factor == 0 || args.replication_factor > args.brokers {
        bail!(
            "--replication-factor must be between 1 and --brokers ({})",
            args.brokers
        );
    }
    let partitions = args.topics * args.partitions_per_topic;
    println!(
        "kraftd bench snapshot: {} topics x {} partitions = {} partitions, {} brokers, replication factor {}",
        args.topics, args.partitions_per_topic, partitions, args.brokers, args.replication_factor
    );

    let t = Instant::now();
    let img = MetadataImage::synthetic(
        args.topics,
        args.partitions_per_topic,
        args.brokers,
        args.replication_factor,
    );
    let build = t.elapsed();
    let build_peak = peak_rss();

    let scratch;
    let dir = match &args.keep {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir().context("creating a scratch directory")?;
            scratch.path().to_path_buf()
        }
    };
    let id = SnapshotId {
        end_offset: img.record_count() as i64,
        epoch: 1,
    };
    let meta = CheckpointMeta {
        last_contained_log_timestamp: 0,
        ..Default::default()
    };

    let t = Instant::now();
    let (path, written) =
        write_checkpoint(&dir, id, &meta, img.records()).context("writing the checkpoint")?;
    let write = t.elapsed();

    let measured_load = reset_peak_rss();
    let t = Instant::now();
    let (loaded, read) =
        image::load_checkpoint_file(&path).context("reading the checkpoint back")?;
    let load = t.elapsed();
    let load_peak = peak_rss();

    if loaded != img {
        bail!("the image read back differs from the image written");
    }
    let per_partition = written.bytes as f64 / partitions.max(1) as f64;
    println!(
        "  build image:        {:>8.0} ms",
        build.as_secs_f64() * 1e3
    );
    println!(
        "  write checkpoint:   {:>8.0} ms  ({} batches, {} records, fsynced)",
        write.as_secs_f64() * 1e3,
        written.batches,
        written.records
    );
    println!(
        "  checkpoint size:    {:>8} bytes = {per_partition:.1} bytes per partition",
        written.bytes
    );
    println!(
        "  read + load image:  {:>8.0} ms  ({} records, every CRC checked)",
        load.as_secs_f64() * 1e3,
        read.records
    );
    println!(
        "  peak memory:        {} after build+write, {} during load{}",
        mib(build_peak),
        mib(load_peak),
        if measured_load {
            ""
        } else {
            " (peak not resettable here: whole-process figure)"
        }
    );
    println!("  image read back equals image written: yes");
    match &args.keep {
        Some(_) => println!("  kept: {}", path.display()),
        None => println!("  (checkpoint removed; pass --keep DIR to keep it)"),
    }
    Ok(())
}
