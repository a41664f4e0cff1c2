//! End-to-end test harness: a real etcd and real `modelplane` processes on loopback,
//! plus the gRPC steps the tests drive them through.
//!
//! Each process binds `127.0.0.1:0` and prints `modelplane: ROLE listening on ADDR`;
//! the harness reads those lines, so no port is guessed. etcd cannot report its port,
//! so it gets ports the harness reserved a moment before.

mod cluster;
mod data;
mod etcd_cluster;
mod flow;
pub mod keys;
mod load;
pub mod metrics;
mod otlp;
pub mod pki;
mod proxy;
pub mod scenario;

pub use cluster::{Etcd, Process, clean_command, free_port, output_within};
pub use data::{churn_csv, houses_csv, topics_csv};
pub use etcd_cluster::EtcdCluster;
pub use flow::*;
pub use load::{Load, LoadSpec, LoadTally};
pub use otlp::{CollectedSpan, Collector};
pub use proxy::PartitionProxy;
