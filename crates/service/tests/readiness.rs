//! A server's health: the service's own status follows its readiness (what Kubernetes'
//! readiness probe asks for), the whole server's says it is alive (liveness), and both
//! turn NOT_SERVING on drain.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use modelplane_service::access::Role;
use modelplane_service::{AuthLayer, Shutdown};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A service that only has a name: health is what is under test.
#[derive(Clone)]
struct Named;

impl tonic::server::NamedService for Named {
    const NAME: &'static str = "test.Named";
}

impl tower::Service<http::Request<tonic::body::Body>> for Named {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("nothing here").into_http()))
    }
}

async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    let request = HealthCheckRequest { service: service.into() };
    let status = client.check(request).await.expect("health answers").into_inner().status;
    ServingStatus::try_from(status).expect("a known status")
}

/// Polls until `service` reports `wanted` (the status follows readiness a moment later).
async fn until(client: &mut HealthClient<tonic::transport::Channel>, service: &str, wanted: ServingStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(client, service).await;
        if now == wanted {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{service:?} stayed {now:?}, not {wanted:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_service_is_ready_when_its_readiness_says_and_the_server_alive_throughout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (ready, readiness) = tokio::sync::watch::channel(false);
    let shutdown = Shutdown::new();
    let server = tokio::spawn(modelplane_service::serve_grpc(
        "test",
        Named,
        listener,
        shutdown.clone(),
        Duration::from_millis(200),
        AuthLayer::without_keys(Some(Role::Admin)),
        None,
        Some(readiness),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    let mut client = HealthClient::new(channel);

    until(&mut client, "test.Named", ServingStatus::NotServing).await;
    assert_eq!(status(&mut client, "").await, ServingStatus::Serving, "alive while not ready");
    ready.send_replace(true);
    until(&mut client, "test.Named", ServingStatus::Serving).await;
    ready.send_replace(false);
    until(&mut client, "test.Named", ServingStatus::NotServing).await;
    ready.send_replace(true);
    until(&mut client, "test.Named", ServingStatus::Serving).await;

    // Draining: both say NOT_SERVING during the linger, whatever readiness says.
    shutdown.cancel();
    until(&mut client, "", ServingStatus::NotServing).await;
    assert_eq!(status(&mut client, "test.Named").await, ServingStatus::NotServing);
    server.await.expect("join").expect("served");
}
