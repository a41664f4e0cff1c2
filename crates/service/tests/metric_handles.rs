//! The handle cache against the process recorder (its own test binary: installing the
//! global recorder would change what the crate's unit tests with local recorders see).

use std::time::Duration;

use modelplane_service::HandleCache;

#[test]
fn handles_of_the_process_recorder_are_registered_once_and_still_count() {
    assert!(modelplane_service::metrics::install(), "no other recorder in this test binary");

    let cache = HandleCache::<u8, metrics::Counter>::default();
    let mut registered = 0;
    for key in [1, 1, 1, 2] {
        let counter = cache.get("m", key, || {
            registered += 1;
            metrics::counter!("cache_test_total", "model" => "m", "key" => key.to_string())
        });
        counter.increment(1);
    }
    assert_eq!(registered, 2, "one registration per distinct key");
    let text = modelplane_service::metrics::render();
    assert!(text.contains(r#"cache_test_total{model="m",key="1"} 3"#), "{text}");
    assert!(text.contains(r#"cache_test_total{model="m",key="2"} 1"#), "{text}");

    // The per-RPC metrics go through the cache too; repeated calls keep counting.
    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
    for _ in 0..2 {
        modelplane_service::record_call("worker", INFER, tonic::Code::Ok, Duration::from_micros(80));
    }
    modelplane_service::record_call("worker", INFER, tonic::Code::NotFound, Duration::from_micros(5));
    let text = modelplane_service::metrics::render();
    let requests = modelplane_service::REQUESTS_TOTAL;
    assert!(text.contains(&format!(r#"{requests}{{role="worker",method="{INFER}",code="OK"}} 2"#)), "{text}");
    assert!(text.contains(&format!(r#"{requests}{{role="worker",method="{INFER}",code="NOT_FOUND"}} 1"#)), "{text}");
    let seconds = modelplane_service::REQUEST_DURATION_SECONDS;
    assert!(text.contains(&format!(r#"{seconds}_count{{role="worker",method="{INFER}"}} 3"#)), "{text}");
}
