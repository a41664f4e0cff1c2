//! Triton's extensions to the V2 protocol as a worker answers them: the model
//! configuration of a loaded version and repository index entries.

use modelplane_kserve::TensorSpec;
use modelplane_proto::inference as pb;
use modelplane_store::schema::LoadState;

use crate::state::LoadedModel;

/// Why a worker refuses RepositoryModelLoad/Unload.
pub const WORKER_FOLLOWS_DEPLOYMENTS: &str = "workers load what deployments name; call RepositoryModelLoad or \
     RepositoryModelUnload on the router, or use `modelplane deploy`";

/// The configuration of a loaded version. With dynamic batching the first (row)
/// dimension is the batch dimension: `max_batch_size` says how many rows one execution
/// takes and `dims` leave it out, as Triton's configurations do; otherwise
/// `max_batch_size` is 0 and `dims` are the full shapes.
pub fn model_config(loaded: &LoadedModel) -> pb::ModelConfig {
    let policy = loaded.batcher.as_ref().map(|b| b.policy());
    let dims = |spec: &TensorSpec| match policy {
        Some(_) => spec.shape.iter().skip(1).copied().collect(),
        None => spec.shape.clone(),
    };
    let record = &loaded.record;
    let format = record.format();
    pb::ModelConfig {
        name: record.model.clone(),
        platform: format.platform().into(),
        backend: format.backend().into(),
        max_batch_size: policy.map(|p| i32::try_from(p.max_batch_size).unwrap_or(i32::MAX)).unwrap_or(0),
        input: record
            .signature
            .inputs
            .iter()
            .map(|s| pb::ModelInput { name: s.name.clone(), data_type: s.datatype.triton().into(), dims: dims(s) })
            .collect(),
        output: record
            .signature
            .outputs
            .iter()
            .map(|s| pb::ModelOutput { name: s.name.clone(), data_type: s.datatype.triton().into(), dims: dims(s) })
            .collect(),
        dynamic_batching: policy.map(|p| pb::ModelDynamicBatching {
            preferred_batch_size: Vec::new(),
            max_queue_delay_microseconds: u64::try_from(p.max_queue_delay.as_micros()).unwrap_or(u64::MAX),
        }),
    }
}

/// One repository index entry in Triton's state words.
pub fn index_entry(
    model: &str,
    version: u64,
    state: LoadState,
    error: &str,
) -> pb::repository_index_response::ModelIndex {
    let state = match state {
        LoadState::Ready => "READY",
        LoadState::Loading => "LOADING",
        LoadState::Failed => "UNAVAILABLE",
    };
    pb::repository_index_response::ModelIndex {
        name: model.to_owned(),
        version: version.to_string(),
        state: state.into(),
        reason: error.to_owned(),
    }
}
