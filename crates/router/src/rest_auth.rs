//! Authentication of the REST port: each route stands for the gRPC method it performs
//! and is admitted by the same [`AuthLayer::admit`] as a call to that method on the gRPC
//! port, so both ports share one permission table, one key cache and one failure limit.
//! A route with a `{model}` is refused (403) when the caller's key is limited to other
//! models. Refusals answer in KServe's error body: 401 (with `WWW-Authenticate: Bearer`),
//! 403 or 429.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use modelplane_service::AuthLayer;
use modelplane_service::tls::PeerCertificates;
use tonic::Code;

use crate::rest::RestError;

const INFERENCE: &str = "/inference.GRPCInferenceService/";

/// The gRPC method the route `template` (as axum matched it) performs; `None`: the route
/// is open like health (`/metrics`, scraped by Prometheus as Triton's metrics port is).
/// A route missing here maps to no method, which no role may call.
fn grpc_method(template: &str) -> Option<String> {
    let method = match template {
        "/metrics" => return None,
        "/v2/health/live" => "ServerLive",
        "/v2/health/ready" => "ServerReady",
        "/v2" => "ServerMetadata",
        "/v2/models/{model}" | "/v2/models/{model}/versions/{version}" => "ModelMetadata",
        "/v2/models/{model}/ready" | "/v2/models/{model}/versions/{version}/ready" => "ModelReady",
        "/v2/models/{model}/infer" | "/v2/models/{model}/versions/{version}/infer" => "ModelInfer",
        "/v2/models/{model}/config" | "/v2/models/{model}/versions/{version}/config" => "ModelConfig",
        "/v2/models/stats" | "/v2/models/{model}/stats" | "/v2/models/{model}/versions/{version}/stats" => {
            "ModelStatistics"
        }
        "/v2/repository/index" => "RepositoryIndex",
        "/v2/repository/models/{model}/load" => "RepositoryModelLoad",
        "/v2/repository/models/{model}/unload" => "RepositoryModelUnload",
        _ => "Unmapped",
    };
    Some(format!("{INFERENCE}{method}"))
}

/// The middleware (installed with `route_layer`, so unknown paths still answer 404).
pub(crate) async fn admit(
    State(auth): State<AuthLayer>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let template = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned()).unwrap_or_default();
    let Some(method) = grpc_method(&template) else { return next.run(request).await };
    let authorization = request.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes());
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    let certificates = request.extensions().get::<PeerCertificates>().map(|PeerCertificates(chain)| chain.as_slice());
    let caller = match auth.admit(&method, authorization, peer, certificates) {
        Ok(caller) => caller,
        Err(status) => return refusal(&status),
    };
    if let Some(caller) = caller {
        let model = params.iter().find(|(name, _)| *name == "model").map(|(_, value)| value);
        if let Some(Err(status)) = model.map(|model| caller.reach(model)) {
            return refusal(&status);
        }
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// A refusal as the REST port answers it.
fn refusal(status: &tonic::Status) -> Response {
    let code = match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = RestError(code, status.message().to_owned()).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_the_methods_they_perform() {
        use modelplane_service::access::{Permission, permission};
        let needs = |template: &str| grpc_method(template).map(|method| permission(&method));
        assert_eq!(needs("/v2/health/ready"), Some(Permission::Public));
        assert_eq!(needs("/v2/models/{model}/versions/{version}/infer"), Some(Permission::Infer));
        assert_eq!(needs("/v2/repository/models/{model}/load"), Some(Permission::Deploy));
        assert_eq!(needs("/v2/models/stats"), Some(Permission::ReadStatistics));
        assert_eq!(needs("/metrics"), None);
        assert_eq!(needs("/v2/something/new"), Some(Permission::Unlisted), "an unmapped route is denied");
    }
}
