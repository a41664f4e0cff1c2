//! `modelplane workers`: the live workers, their memory and what they hold, as the
//! registry sees them.

use anyhow::Result;
use bytesize::ByteSize;
use clap::Args;
use modelplane_proto::registry as pb;

use crate::Endpoints;
use crate::client::{OutputFormat, registry, status_error};

#[derive(Args)]
pub struct WorkersArgs {
    /// Output format: a block per worker, or one JSON object per worker.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

pub async fn workers(args: WorkersArgs, endpoints: &Endpoints) -> Result<()> {
    let response = registry(endpoints)?
        .list_workers(pb::ListWorkersRequest {})
        .await
        .map_err(|s| status_error("listing workers failed", s))?
        .into_inner();
    if response.workers.is_empty() && args.output == OutputFormat::Text {
        println!("no live workers");
    }
    for worker in response.workers {
        match args.output {
            OutputFormat::Json => println!("{}", worker_json(&worker)),
            OutputFormat::Text => print_worker(&worker),
        }
    }
    Ok(())
}

fn print_worker(worker: &pb::Worker) {
    let placed = ByteSize(worker.memory_placed_bytes).display().iec();
    let memory = match worker.memory_capacity_bytes {
        Some(capacity) => format!("{placed} of {} placed", ByteSize(capacity).display().iec()),
        None => format!("{placed} placed, no limit"),
    };
    let draining = if worker.accepting { "" } else { "  (draining)" };
    println!("{}\t{}\t{memory}{draining}", worker.id, worker.addr);
    for loaded in &worker.loaded {
        let error = if loaded.error.is_empty() { String::new() } else { format!(": {}", loaded.error) };
        let measured =
            loaded.memory_bytes.map(|bytes| format!("\t{}", ByteSize(bytes).display().iec())).unwrap_or_default();
        println!("  {} v{}\t{}{measured}{error}", loaded.model, loaded.version, loaded.state);
    }
}

fn worker_json(worker: &pb::Worker) -> serde_json::Value {
    let loaded: Vec<serde_json::Value> = worker
        .loaded
        .iter()
        .map(|l| {
            serde_json::json!({
                "model": l.model,
                "version": l.version,
                "state": l.state,
                "error": l.error,
                "memory_bytes": l.memory_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "id": worker.id,
        "addr": worker.addr,
        "accepting": worker.accepting,
        "memory_capacity_bytes": worker.memory_capacity_bytes,
        "memory_placed_bytes": worker.memory_placed_bytes,
        "loaded": loaded,
    })
}
