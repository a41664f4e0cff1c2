/// Router settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Attempts on distinct replicas for one request before giving up (0: every replica).
    pub max_attempts: usize,
    /// Registry endpoint, for Triton's RepositoryModelLoad/Unload (which deploy and
    /// undeploy); `None` refuses them.
    pub registry_addr: Option<String>,
    /// Most tensor elements one inference request may carry (0: no limit).
    pub max_tensor_elements: u64,
    /// Most inference requests one client may have in flight (0: no limit).
    pub max_requests_per_client: usize,
    /// Workers in this process (`modelplane up`) that are called directly rather than
    /// over the network; empty in a cluster.
    pub in_process: modelplane_service::InProcessServers,
    /// How callers are admitted, on the gRPC and the REST port.
    pub access: modelplane_service::access::ServerAccess,
    /// What it presents to the workers it forwards to.
    pub credentials: modelplane_service::Credentials,
    /// How long a worker whose record left the store stays routable (see
    /// [`crate::vanished`]): longer than an etcd stall or partition is expected to last.
    pub vanished_worker_grace: std::time::Duration,
    /// The name every worker's certificate is checked against over TLS, for workers that
    /// advertise an address no certificate names (a pod IP); `None`: the advertised host.
    pub worker_tls_server_name: Option<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_attempts: 0,
            registry_addr: None,
            // 64 Mi elements: 256 MiB of FP32, four times the largest gRPC message.
            max_tensor_elements: 64 << 20,
            max_requests_per_client: 256,
            in_process: Default::default(),
            access: Default::default(),
            credentials: Default::default(),
            vanished_worker_grace: std::time::Duration::from_secs(30),
            worker_tls_server_name: None,
        }
    }
}

impl RouterConfig {
    /// Checks the settings before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.worker_tls_server_name {
            modelplane_service::tls::server_name(name).map_err(|err| format!("worker TLS server name: {err}"))?;
        }
        Ok(())
    }
}
