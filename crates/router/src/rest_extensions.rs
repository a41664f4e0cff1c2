//! Triton's HTTP extensions on the router's REST port — model repository (index, load,
//! unload), statistics and model configuration — in the JSON Triton's HTTP server
//! answers with, so `tritonclient.http` works as it does against Triton. Each is the
//! same call as on the gRPC port.

use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use modelplane_proto::inference as pb;
use modelplane_service::Caller;
use serde_json::{Value, json};

use crate::rest::{RestError, RestResult};
use crate::rest_body::RequestBody;
use crate::service::RouterService;

/// The extension routes over `service`.
pub(crate) fn routes() -> Router<RouterService> {
    use axum::routing::{get, post};
    Router::new()
        .route("/v2/repository/index", post(index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .route("/v2/models/stats", get(all_statistics))
        .route("/v2/models/{model}/stats", get(model_statistics))
        .route("/v2/models/{model}/versions/{version}/stats", get(version_statistics))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(version_config))
}

/// `{"ready": true}` (optional) lists only versions ready for inference.
async fn index(
    State(service): State<RouterService>,
    caller: Option<Extension<Caller>>,
    RequestBody(body): RequestBody,
) -> RestResult<axum::Json<Value>> {
    let ready = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let request: Value = serde_json::from_slice(&body)
            .map_err(|err| RestError::bad_request(format!("repository index request is not JSON: {err}")))?;
        match request.get("ready") {
            None => false,
            Some(Value::Bool(ready)) => *ready,
            Some(other) => return Err(RestError::bad_request(format!("\"ready\" is {other}; expected true or false"))),
        }
    };
    let models: Vec<Value> = service
        .index(ready, caller.as_ref().map(|Extension(caller)| caller))
        .models
        .into_iter()
        .map(|m| json!({ "name": m.name, "version": m.version, "state": m.state, "reason": m.reason }))
        .collect();
    Ok(axum::Json(Value::Array(models)))
}

async fn load(State(service): State<RouterService>, Path(model): Path<String>, headers: HeaderMap) -> RestResult<()> {
    Ok(service.load(&model, forwarded(&headers)).await?)
}

async fn unload(State(service): State<RouterService>, Path(model): Path<String>, headers: HeaderMap) -> RestResult<()> {
    Ok(service.unload(&model, forwarded(&headers)).await?)
}

/// The caller's `authorization`, which load and unload present to the registry.
fn forwarded(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut value = headers.get(header::AUTHORIZATION)?.clone();
    value.set_sensitive(true);
    Some(value)
}

async fn all_statistics(
    State(service): State<RouterService>,
    caller: Option<Extension<Caller>>,
) -> RestResult<axum::Json<Value>> {
    statistics(service, String::new(), String::new(), caller).await
}

async fn model_statistics(
    State(service): State<RouterService>,
    Path(model): Path<String>,
) -> RestResult<axum::Json<Value>> {
    statistics(service, model, String::new(), None).await
}

async fn version_statistics(
    State(service): State<RouterService>,
    Path((model, version)): Path<(String, String)>,
) -> RestResult<axum::Json<Value>> {
    statistics(service, model, version, None).await
}

/// Statistics of `name` (the middleware checked the caller may see it), or of every
/// model `caller` may see.
async fn statistics(
    service: RouterService,
    name: String,
    version: String,
    caller: Option<Extension<Caller>>,
) -> RestResult<axum::Json<Value>> {
    let caller = caller.as_ref().map(|Extension(caller)| caller);
    let answer = service.statistics(pb::ModelStatisticsRequest { name, version }, caller).await?;
    let duration = |d: &Option<pb::StatisticDuration>| {
        let d = d.unwrap_or_default();
        json!({ "count": d.count, "ns": d.ns })
    };
    let stats: Vec<Value> = answer
        .model_stats
        .iter()
        .map(|s| {
            let i = s.inference_stats.unwrap_or_default();
            let batches: Vec<Value> = s
                .batch_stats
                .iter()
                .map(|b| {
                    json!({
                        "batch_size": b.batch_size,
                        "compute_input": duration(&b.compute_input),
                        "compute_infer": duration(&b.compute_infer),
                        "compute_output": duration(&b.compute_output),
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "version": s.version,
                "last_inference": s.last_inference,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": duration(&i.success),
                    "fail": duration(&i.fail),
                    "queue": duration(&i.queue),
                    "compute_input": duration(&i.compute_input),
                    "compute_infer": duration(&i.compute_infer),
                    "compute_output": duration(&i.compute_output),
                },
                "batch_stats": batches,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "model_stats": stats })))
}

async fn model_config(
    State(service): State<RouterService>,
    Path(model): Path<String>,
) -> RestResult<axum::Json<Value>> {
    config(service, model, String::new()).await
}

async fn version_config(
    State(service): State<RouterService>,
    Path((model, version)): Path<(String, String)>,
) -> RestResult<axum::Json<Value>> {
    config(service, model, version).await
}

/// The configuration itself, as Triton's HTTP server answers (no `config` wrapper).
async fn config(service: RouterService, name: String, version: String) -> RestResult<axum::Json<Value>> {
    let config = service.config(pb::ModelConfigRequest { name, version }).await?.config.unwrap_or_default();
    let data_type = |code: i32| pb::DataType::try_from(code).unwrap_or(pb::DataType::TypeInvalid).as_str_name();
    let inputs: Vec<Value> = config
        .input
        .iter()
        .map(|t| json!({ "name": t.name, "data_type": data_type(t.data_type), "dims": t.dims }))
        .collect();
    let outputs: Vec<Value> = config
        .output
        .iter()
        .map(|t| json!({ "name": t.name, "data_type": data_type(t.data_type), "dims": t.dims }))
        .collect();
    let mut answer = json!({
        "name": config.name,
        "platform": config.platform,
        "backend": config.backend,
        "max_batch_size": config.max_batch_size,
        "input": inputs,
        "output": outputs,
    });
    if let Some(batching) = config.dynamic_batching {
        answer["dynamic_batching"] = json!({
            "preferred_batch_size": batching.preferred_batch_size,
            "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
        });
    }
    Ok(axum::Json(answer))
}
