//! Per-request and per-client limits the router enforces before forwarding: a cap on a
//! request's tensor elements (INVALID_ARGUMENT) and on the requests one client has in
//! flight (RESOURCE_EXHAUSTED), so one caller cannot take every worker slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use modelplane_proto::inference as pb;

use crate::Error;

/// Metadata a client may send to name itself; else its IP address identifies it.
pub const CLIENT_ID_METADATA: &str = "x-modelplane-client";

/// Who a request comes from: the name it gave, else its peer's address (kept as an
/// address: formatting it for every request cost more than the limit's bookkeeping).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientId {
    Named(String),
    Peer(IpAddr),
    Unknown,
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientId::Named(name) => f.write_str(name),
            ClientId::Peer(ip) => ip.fmt(f),
            ClientId::Unknown => f.write_str("unknown"),
        }
    }
}

/// Requests in flight per client.
#[derive(Default)]
pub struct ClientLimits {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<ClientId, usize>>>,
}

/// Holds one of a client's slots until dropped.
pub struct ClientSlot {
    client: ClientId,
    in_flight: Arc<Mutex<HashMap<ClientId, usize>>>,
}

impl ClientLimits {
    /// At most `limit` requests in flight per client (0: no limit).
    pub fn new(limit: usize) -> Self {
        Self { limit, in_flight: Arc::default() }
    }

    /// Takes a slot for `client`, or says why not.
    pub fn enter(&self, client: ClientId) -> Result<Option<ClientSlot>, Error> {
        if self.limit == 0 {
            return Ok(None);
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(client.clone()).or_default();
        if *count >= self.limit {
            return Err(Error::ResourceExhausted(format!(
                "client {client} already has {} requests in flight, the most this router allows per client; \
                 wait for answers or spread load over more clients",
                self.limit
            )));
        }
        *count += 1;
        Ok(Some(ClientSlot { client, in_flight: self.in_flight.clone() }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

/// Who sent `request`: its `x-modelplane-client` metadata, else its peer IP.
pub fn client_of<T>(request: &tonic::Request<T>) -> ClientId {
    if let Some(id) = request.metadata().get(CLIENT_ID_METADATA).and_then(|v| v.to_str().ok()) {
        return ClientId::Named(id.to_owned());
    }
    request.remote_addr().map_or(ClientId::Unknown, |addr| ClientId::Peer(addr.ip()))
}

/// Refuses a request whose inputs hold more than `limit` elements (0: no limit).
pub fn check_elements(request: &pb::ModelInferRequest, limit: u64) -> Result<(), Error> {
    if limit == 0 {
        return Ok(());
    }
    let mut total: u64 = 0;
    for input in &request.inputs {
        let elements =
            input.shape.iter().try_fold(1u64, |acc, d| u64::try_from(*d).ok().and_then(|d| acc.checked_mul(d)));
        total = total.saturating_add(elements.unwrap_or(u64::MAX));
    }
    if total > limit {
        return Err(Error::InvalidArgument(format!(
            "the request's inputs hold {total} elements; this router accepts at most {limit} per request \
             (split the batch)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> ClientId {
        ClientId::Named(name.into())
    }

    #[test]
    fn a_client_gets_its_slots_back_when_answers_drop() {
        let limits = ClientLimits::new(2);
        let first = limits.enter(named("a")).expect("first");
        let _second = limits.enter(named("a")).expect("second");
        let refused = limits.enter(named("a")).err().expect("third is over the limit");
        assert!(refused.to_string().contains("client a already has 2 requests in flight"), "{refused}");
        assert!(limits.enter(named("b")).is_ok(), "another client has its own slots");
        drop(first);
        assert!(limits.enter(named("a")).is_ok(), "a slot came back");
        assert!(ClientLimits::new(0).enter(named("a")).expect("unlimited").is_none());
    }

    #[test]
    fn element_counts_are_checked_across_inputs() {
        let tensor = |shape: Vec<i64>| pb::model_infer_request::InferInputTensor { shape, ..Default::default() };
        let request = pb::ModelInferRequest { inputs: vec![tensor(vec![4, 3]), tensor(vec![2])], ..Default::default() };
        assert!(check_elements(&request, 14).is_ok());
        let err = check_elements(&request, 13).expect_err("14 > 13");
        assert!(err.to_string().contains("hold 14 elements") && err.to_string().contains("at most 13"), "{err}");
        assert!(check_elements(&request, 0).is_ok());
    }
}
