//! KServe v2 REST/JSON on the router, with Triton's and KServe's paths, so curl,
//! `tritonclient.http` and KServe's HTTP clients work. Includes Triton's binary tensor
//! data extension (a JSON header of `Inference-Header-Content-Length` bytes followed by
//! raw tensors), which `tritonclient.http` uses by default. Every request becomes the
//! same forwarded gRPC call as on the gRPC port.

use axum::Router;
use axum::body::Bytes;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use modelplane_proto::inference as pb;
use serde_json::{Value, json};
use tonic::Code;

use crate::Error;
use crate::rest_body::{BODY_LIMIT, RequestBody};
use crate::service::RouterService;
use modelplane_kserve::json::{input_tensor, raw_output_json};

/// Header naming the length of the JSON part of a binary-extension body.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// An error as KServe's REST protocol answers it: `{"error": "..."}` with a status.
pub(crate) struct RestError(pub(crate) StatusCode, pub(crate) String);

impl RestError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

/// The router's one Error → HTTP mapping, by the gRPC code the same error has on the
/// gRPC port (a passed-on answer keeps its own), as KServe's and Triton's HTTP servers
/// map codes.
impl From<Error> for RestError {
    fn from(err: Error) -> Self {
        let code = match err.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::AlreadyExists
            | Code::Aborted
            | Code::Internal
            | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(code, err.to_string())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) type RestResult<T> = Result<T, RestError>;

/// The REST routes over `service`, each call admitted by `auth`.
pub fn routes(service: RouterService, auth: modelplane_service::AuthLayer) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(version_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(version_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(version_infer))
        .merge(crate::rest_extensions::routes())
        .merge(modelplane_service::metrics::routes())
        .route_layer(axum::middleware::from_fn_with_state(auth, crate::rest_auth::admit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(service)
}

fn status_only(ok: bool) -> StatusCode {
    if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

async fn server_metadata() -> axum::Json<Value> {
    let metadata = modelplane_kserve::grpc::server_metadata();
    axum::Json(json!({ "name": metadata.name, "version": metadata.version, "extensions": metadata.extensions }))
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(service): State<RouterService>) -> StatusCode {
    status_only(service.server_is_ready())
}

async fn model_ready(State(service): State<RouterService>, Path(model): Path<String>) -> RestResult<StatusCode> {
    Ok(status_only(service.model_is_ready(&model, "")?))
}

async fn version_ready(
    State(service): State<RouterService>,
    Path((model, version)): Path<(String, String)>,
) -> RestResult<StatusCode> {
    Ok(status_only(service.model_is_ready(&model, &version)?))
}

async fn model_metadata(
    State(service): State<RouterService>,
    Path(model): Path<String>,
) -> RestResult<axum::Json<Value>> {
    metadata(service, model, String::new()).await
}

async fn version_metadata(
    State(service): State<RouterService>,
    Path((model, version)): Path<(String, String)>,
) -> RestResult<axum::Json<Value>> {
    metadata(service, model, version).await
}

async fn metadata(service: RouterService, model: String, version: String) -> RestResult<axum::Json<Value>> {
    let metadata = service.metadata(pb::ModelMetadataRequest { name: model, version }).await?;
    let tensors = |tensors: &[pb::model_metadata_response::TensorMetadata]| -> Vec<Value> {
        tensors.iter().map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape })).collect()
    };
    Ok(axum::Json(json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": tensors(&metadata.inputs),
        "outputs": tensors(&metadata.outputs),
    })))
}

async fn infer(
    State(service): State<RouterService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(model): Path<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> RestResult<Response> {
    let _slot = service.client_limits.enter(client_of_http(&headers, peer))?;
    run_infer(service, model, String::new(), &headers, body).await
}

async fn version_infer(
    State(service): State<RouterService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> RestResult<Response> {
    let _slot = service.client_limits.enter(client_of_http(&headers, peer))?;
    run_infer(service, model, version, &headers, body).await
}

/// Why a request body is not JSON. Python's `json.dumps` writes NaN and infinities as
/// bare `NaN` and `Infinity`, which JSON has no tokens for; such a body is told how to
/// send those values instead.
fn not_json(text: &[u8], err: &serde_json::Error) -> String {
    let non_finite = [&b"NaN"[..], b"Infinity"].iter().any(|token| text.windows(token.len()).any(|w| w == *token));
    let hint =
        if non_finite { " (NaN and Infinity are not JSON numbers; send such values as binary data)" } else { "" };
    format!("request body is not valid JSON: {err}{hint}")
}

/// The REST caller's identity for per-client limits, as on the gRPC port.
fn client_of_http(headers: &HeaderMap, peer: SocketAddr) -> crate::limits::ClientId {
    match headers.get(crate::limits::CLIENT_ID_METADATA).and_then(|v| v.to_str().ok()) {
        Some(id) => crate::limits::ClientId::Named(id.to_owned()),
        None => crate::limits::ClientId::Peer(peer.ip()),
    }
}

fn parameter_bool(parameters: Option<&Value>, name: &str) -> bool {
    parameters.and_then(|p| p.get(name)).and_then(Value::as_bool).unwrap_or(false)
}

/// A requested output's parameters as the worker takes them (`classification`, say),
/// all but `binary_data`, which only shapes the REST answer.
fn output_parameters(output: &str, parameters: Option<&Value>) -> RestResult<HashMap<String, pb::InferParameter>> {
    use pb::infer_parameter::ParameterChoice;
    let mut converted = HashMap::new();
    let Some(parameters) = parameters else { return Ok(converted) };
    let parameters = parameters.as_object().ok_or_else(|| {
        RestError::bad_request(format!("the parameters of output {output:?} must be an object, got {parameters}"))
    })?;
    for (name, value) in parameters.iter().filter(|(name, _)| *name != "binary_data") {
        let choice = match value {
            Value::Bool(flag) => ParameterChoice::BoolParam(*flag),
            Value::String(text) => ParameterChoice::StringParam(text.clone()),
            Value::Number(number) => match (number.as_i64(), number.as_u64()) {
                (Some(integer), _) => ParameterChoice::Int64Param(integer),
                (None, Some(integer)) => ParameterChoice::Uint64Param(integer),
                // Every JSON number that is not an integer reads as an f64.
                (None, None) => ParameterChoice::DoubleParam(number.as_f64().unwrap_or(f64::NAN)),
            },
            other => {
                return Err(RestError::bad_request(format!(
                    "parameter {name:?} of output {output:?} must be a boolean, number or string, got {other}"
                )));
            }
        };
        converted.insert(name.clone(), pb::InferParameter { parameter_choice: Some(choice) });
    }
    Ok(converted)
}

async fn run_infer(
    service: RouterService,
    model: String,
    version: String,
    headers: &HeaderMap,
    body: Bytes,
) -> RestResult<Response> {
    let json_length = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n <= body.len())
            .ok_or_else(|| RestError::bad_request(format!("{HEADER_LENGTH} is not a length within the body")))?,
    };
    let header: Value = serde_json::from_slice(&body[..json_length])
        .map_err(|err| RestError::bad_request(not_json(&body[..json_length], &err)))?;
    let mut binary = body.slice(json_length..);
    let inputs = header
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| RestError::bad_request("request needs an \"inputs\" array"))?;
    let mut request = pb::ModelInferRequest {
        model_name: model,
        model_version: version,
        id: header.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ..Default::default()
    };
    for input in inputs {
        let (tensor, raw) = input_tensor(input, &mut binary).map_err(|err| RestError::bad_request(err.to_string()))?;
        request.inputs.push(tensor);
        request.raw_input_contents.push(raw);
    }
    if !binary.is_empty() {
        return Err(RestError::bad_request(format!("{} bytes of binary data follow the last input", binary.len())));
    }
    if let Some(timeout) = header.get("parameters").and_then(|p| p.get(modelplane_service::TIMEOUT_PARAMETER)) {
        // Triton's HTTP clients send the request's deadline here, in microseconds.
        let micros = timeout.as_u64().ok_or_else(|| {
            RestError::bad_request(format!(
                "parameters.{} must be a non-negative integer of microseconds, got {timeout}",
                modelplane_service::TIMEOUT_PARAMETER
            ))
        })?;
        let parameter =
            pb::InferParameter { parameter_choice: Some(pb::infer_parameter::ParameterChoice::Uint64Param(micros)) };
        request.parameters.insert(modelplane_service::TIMEOUT_PARAMETER.to_owned(), parameter);
    }
    let binary_default = parameter_bool(header.get("parameters"), "binary_data_output");
    let mut binary_outputs = HashSet::new();
    let requested_outputs = match header.get("outputs") {
        None => &[][..],
        Some(Value::Array(outputs)) => outputs.as_slice(),
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "\"outputs\" must be an array of {{\"name\": …}} objects, got {other}"
            )));
        }
    };
    for output in requested_outputs {
        let name = output
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RestError::bad_request("an output has no name"))?;
        if parameter_bool(output.get("parameters"), "binary_data") || binary_default {
            binary_outputs.insert(name.to_owned());
        }
        request.outputs.push(pb::model_infer_request::InferRequestedOutputTensor {
            name: name.to_owned(),
            parameters: output_parameters(name, output.get("parameters"))?,
        });
    }
    let response: pb::ModelInferResponse = service.infer(request, None).await?;
    let mut outputs = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    for (index, output) in response.outputs.iter().enumerate() {
        let raw = response.raw_output_contents.get(index).map(|b| b.as_ref()).unwrap_or_default();
        let mut entry = json!({ "name": output.name, "datatype": output.datatype, "shape": output.shape });
        if binary_default || binary_outputs.contains(&output.name) {
            entry["parameters"] = json!({ "binary_data_size": raw.len() });
            tail.extend_from_slice(raw);
        } else {
            entry["data"] = raw_output_json(&output.datatype, raw)
                .map_err(|err| RestError::from(Error::Internal(err.to_string())))?;
        }
        outputs.push(entry);
    }
    let body = json!({
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    });
    let mut bytes =
        serde_json::to_vec(&body).map_err(|err| RestError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    let json_length = bytes.len();
    let mut answer = if tail.is_empty() {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
    } else {
        bytes.extend_from_slice(&tail);
        let mut answer =
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))], bytes).into_response();
        answer.headers_mut().insert(HEADER_LENGTH, HeaderValue::from(json_length));
        answer
    };
    *answer.status_mut() = StatusCode::OK;
    Ok(answer)
}
