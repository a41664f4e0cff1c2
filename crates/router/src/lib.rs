//! The router: the front door for inference. Watches workers, deployments and aliases,
//! resolves each request's model and version, and forwards it to a ready worker.
#![forbid(unsafe_code)]

mod config;
mod error;
mod limits;
mod metrics;
mod pass_on_server;
mod rest;
mod rest_auth;
mod rest_body;
mod rest_extensions;
mod service;
mod table;
mod triton_extensions;
mod vanished;
mod worker_link;

use std::sync::Arc;
use std::time::Duration;

use modelplane_service::Shutdown;
use modelplane_store::schema;
use modelplane_store::{Catalog, KvStore, Mirror};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::RouterConfig;
pub use error::{Error, Result};
pub use limits::CLIENT_ID_METADATA;
pub use service::RouterService;
pub use table::{Clients, LastGood, Replica, RoutingTable, Suspects, resolve};
pub use worker_link::{WorkerLink, method};

/// Shadow copies a router has in flight at most; more are dropped.
const SHADOW_COPIES_IN_FLIGHT: usize = 256;

/// Serves the inference front door on `listener` until `shutdown`, draining in-flight
/// requests before it returns.
pub async fn serve(
    config: RouterConfig,
    store: Arc<dyn KvStore>,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: Shutdown,
) -> Result<()> {
    config.validate().map_err(Error::InvalidArgument)?;
    let tls = config.access.tls.clone();
    metrics::describe();
    let models = Mirror::start(store.clone(), schema::MODELS);
    let deployments = Mirror::start(store.clone(), schema::DEPLOYMENTS);
    let workers = Mirror::start(store.clone(), schema::WORKERS);
    let auth = modelplane_store::KeyCache::auth_layer(store.clone(), &config.access)
        .await
        .map_err(|err| Error::Unavailable(err.to_string()))?;
    let clients = Arc::new(Clients::new(
        config.in_process.clone(),
        config.credentials.clone(),
        config.worker_tls_server_name.clone(),
    ));
    let empty = RoutingTable::build(Arc::new(Catalog::default()), Default::default(), &clients);
    let (table_tx, table_rx) = watch::channel(Arc::new(empty));
    let (synced_tx, synced_rx) = watch::channel(false);

    let follow = {
        let (shutdown, grace) = (shutdown.clone(), config.vanished_worker_grace);
        tokio::spawn(async move {
            let (mut models_rx, mut deployments_rx, mut workers_rx) =
                (models.subscribe(), deployments.subscribe(), workers.subscribe());
            let mut vanished = vanished::VanishedWorkers::new(grace);
            loop {
                let (m, d, w) = (models.current(), deployments.current(), workers.current());
                let catalog = Arc::new(Catalog::build(&m, &d));
                let live = modelplane_store::workers(&w).unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "corrupt worker record; routing around it");
                    Default::default()
                });
                let live = vanished.merge(live, std::time::Instant::now());
                // Wakes the loop to drop a vanished worker whose grace ended.
                let expiry = vanished.next_expiry();
                table_tx.send_replace(Arc::new(RoutingTable::build(catalog, live, &clients)));
                synced_tx.send_replace(m.synced && d.synced && w.synced);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = models_rx.changed() => {}
                    _ = deployments_rx.changed() => {}
                    _ = workers_rx.changed() => {}
                    _ = sleep_until(expiry) => {}
                }
            }
        })
    };

    let service = RouterService {
        table: table_rx,
        synced: synced_rx,
        last_good: Arc::new(LastGood::default()),
        suspects: Arc::new(Suspects::default()),
        client_limits: Arc::new(limits::ClientLimits::new(config.max_requests_per_client)),
        shadow_slots: Arc::new(tokio::sync::Semaphore::new(SHADOW_COPIES_IN_FLIGHT)),
        draining: shutdown.clone(),
        config,
    };
    let rest_acceptor = tls
        .as_ref()
        .map(|tls| tls.acceptor(modelplane_service::tls::ALPN_HTTP))
        .transpose()
        .map_err(Error::InvalidArgument)?;
    let http = http_listener.map(|http_listener| {
        let (app, shutdown) = (rest::routes(service.clone(), auth.clone()), shutdown.clone());
        tracing::info!(addr = ?http_listener.local_addr().ok(), "router serving REST");
        let acceptor = rest_acceptor.clone();
        tokio::spawn(async move {
            let served = match acceptor {
                None => {
                    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                    axum::serve(http_listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
                }
                Some(acceptor) => {
                    use modelplane_service::tls::{TlsListener, TlsPeer};
                    // Handlers read the client's address as plain TCP gives it, the
                    // authentication its certificates.
                    let app =
                        app.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
                            let peer = request
                                .extensions()
                                .get::<axum::extract::ConnectInfo<TlsPeer>>()
                                .map(|info| info.0.clone());
                            if let Some(TlsPeer { addr, certificates }) = peer {
                                request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
                                if let Some(certificates) = certificates {
                                    request.extensions_mut().insert(certificates);
                                }
                            }
                            request
                        }));
                    let listener = match TlsListener::new(http_listener, acceptor) {
                        Ok(listener) => listener,
                        Err(err) => {
                            tracing::error!(error = %err, "REST listener failed");
                            return;
                        }
                    };
                    let app = app.into_make_service_with_connect_info::<TlsPeer>();
                    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
                }
            };
            if let Err(err) = served {
                tracing::error!(error = %err, "REST server failed");
            }
        })
    });
    tracing::info!(addr = ?listener.local_addr().ok(), "router serving");
    let service = pass_on_server::InferenceServer::new(service);
    let served =
        modelplane_service::serve_grpc("router", service, listener, shutdown, Duration::ZERO, auth, tls.as_ref(), None)
            .await;
    follow.abort();
    if let Some(http) = http {
        let _ = http.await;
    }
    served.map_err(|err| Error::Internal(format!("router server: {err}")))
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
