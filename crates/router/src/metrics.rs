//! The router's Prometheus metrics, beside the per-RPC ones every server has: what each
//! model's inference requests came to by the version that answered (the canary split as
//! it happened), retries on another replica, and what became of shadow copies — the only
//! place a shadow's answers show.
//!
//! Model labels come from requests; a name the catalog does not know is counted as
//! `other`, so clients cannot grow the metrics without bound.

use std::sync::LazyLock;

use metrics::Counter;
use modelplane_service::HandleCache;
use modelplane_store::Catalog;
use tonic::Code;

/// Inference requests by model, answering version and gRPC code.
pub const REQUESTS_TOTAL: &str = "modelplane_router_requests_total";
/// Calls sent again to another replica after one could not answer.
pub const RETRIES_TOTAL: &str = "modelplane_router_retries_total";
/// Shadow copies by model, shadow version and outcome (answered, failed, dropped).
pub const SHADOW_COPIES_TOTAL: &str = "modelplane_router_shadow_copies_total";

/// Registers the help text of the router's metrics (idempotent).
pub(crate) fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Inference requests by model, the version that answered, and gRPC code."
    );
    metrics::describe_counter!(RETRIES_TOTAL, "Calls sent again to another replica after one could not answer.");
    metrics::describe_counter!(
        SHADOW_COPIES_TOTAL,
        "Shadow copies of inference requests by model, shadow version and outcome (answered, failed, dropped)."
    );
}

/// What became of a shadow copy.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ShadowOutcome {
    /// The shadow version answered (its answer is dropped).
    Answered,
    /// The shadow version failed or could not be reached.
    Failed,
    /// Too many copies were in flight; this one was never sent.
    Dropped,
}

/// One inference request ended with `code`; `version` is the one that answered, or
/// `None` when none did.
pub(crate) fn request_ended(catalog: &Catalog, model: &str, version: Option<u64>, code: Code) {
    static COUNTERS: LazyLock<HandleCache<(Option<u64>, Code), Counter>> = LazyLock::new(Default::default);
    let model = known(catalog, model);
    let counter = COUNTERS.get(model, (version, code), || {
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        metrics::counter!(REQUESTS_TOTAL, "model" => model.to_owned(), "version" => version, "code" => modelplane_service::metrics::code_name(code))
    });
    counter.increment(1);
}

/// A call to `model` is being sent again to another replica.
pub(crate) fn retried(catalog: &Catalog, model: &str) {
    metrics::counter!(RETRIES_TOTAL, "model" => known(catalog, model).to_owned()).increment(1);
}

/// A shadow copy of a `model` request to `version` ended as `outcome`.
pub(crate) fn shadow_copy(model: &str, version: u64, outcome: ShadowOutcome) {
    let outcome = match outcome {
        ShadowOutcome::Answered => "answered",
        ShadowOutcome::Failed => "failed",
        ShadowOutcome::Dropped => "dropped",
    };
    // Shadows come from deployment records, so the model is known.
    metrics::counter!(SHADOW_COPIES_TOTAL, "model" => model.to_owned(), "version" => version.to_string(), "outcome" => outcome)
        .increment(1);
}

fn known<'a>(catalog: &Catalog, model: &'a str) -> &'a str {
    if catalog.has_model(model) { model } else { "other" }
}
