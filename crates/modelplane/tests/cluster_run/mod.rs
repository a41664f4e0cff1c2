//! The cluster test's body, run by `cluster.rs` in plaintext and by `cluster_mtls.rs`
//! with mTLS on every hop and etcd over TLS: the four roles as separate processes
//! against a real etcd, driven over gRPC through training, deployment, canaries,
//! shadows, drains, freezes, kills, etcd outages and partitions.

use std::path::Path;
use std::time::{Duration, Instant};

use modelplane_proto::registry as pb;

use modelplane_tests::metrics::{metric, scrape};
use modelplane_tests::pki::Pki;
use modelplane_tests::scenario::{self, Endpoints};
use modelplane_tests::{Collector, Etcd, Load, LoadSpec, Process};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the whole cluster test, over mTLS with `pki`'s certificates when given (the
/// caller has made the harness's own clients use them: `pki::use_client_tls`).
pub async fn four_roles(pki: Option<&Pki>) {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let mut etcd = match pki {
        Some(pki) => Etcd::start_tls(pki),
        None => Etcd::start(),
    }
    .expect("etcd starts");
    let collector = Collector::start().await.expect("OTLP receiver starts");
    let tls_env: Vec<(&str, String)> = pki.map(Pki::env).unwrap_or_default();
    let telemetry = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let env: Vec<(&str, &str)> =
        telemetry.iter().copied().chain(tls_env.iter().map(|(name, value)| (*name, value.as_str()))).collect();
    let env = env.as_slice();
    let store = etcd.url.clone();
    // The workers reach etcd through a proxy that the test can cut: a partition between
    // the workers and etcd that leaves etcd in reach of everyone else.
    let (scheme, etcd_host) = store.split_once("://").expect("etcd URL");
    let etcd_addr: std::net::SocketAddr = etcd_host.parse().expect("etcd address");
    let partition = modelplane_tests::PartitionProxy::start(etcd_addr).await.expect("proxy starts");
    let workers_store = format!("{scheme}://{}", partition.addr);
    let blob_dir = dir.path().join("blobs").display().to_string();

    let mut registry = Process::spawn_with_env(
        bin,
        "registry",
        &args(&["registry", "--store", &store, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir]),
        &["registry"],
        logs,
        env,
    )
    .expect("registry starts");
    let registry_addr = registry.addr("registry");
    let mut trainer = Process::spawn_with_env(
        bin,
        "trainer",
        &args(&[
            "trainer",
            "--etcd",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &registry_addr,
            "--id",
            "trainer-a",
        ]),
        &["trainer"],
        logs,
        env,
    )
    .expect("trainer starts");
    // Every worker serves Prometheus metrics on an address of its own, and offers 1 GiB
    // to the versions it loads.
    let spawn_worker = |id: &str| {
        let cache = dir.path().join(format!("cache-{id}")).display().to_string();
        let role =
            ["worker", "--etcd", &workers_store, "--listen", "127.0.0.1:0", "--registry", &registry_addr, "--id", id];
        let options = ["--cache-dir", cache.as_str(), "--metrics-listen", "127.0.0.1:0", "--memory-capacity", "1GiB"];
        let role: Vec<&str> = role.iter().copied().chain(options).collect();
        Process::spawn_with_env(bin, id, &args(&role), &["worker", "metrics"], logs, env).expect("worker starts")
    };
    let mut worker = spawn_worker("worker-a");
    let mut worker_b = spawn_worker("worker-b");
    let mut router = Process::spawn_with_env(
        bin,
        "router",
        &args(&[
            "router",
            "--etcd",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
        &["router", "router-http", "metrics"],
        logs,
        // Named the way a Kubernetes operator names it (the OpenTelemetry SDK variables).
        &env.iter()
            .copied()
            .chain([
                ("OTEL_SERVICE_NAME", "router"),
                ("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=router-0,k8s.namespace.name=ml"),
            ])
            .collect::<Vec<_>>(),
    )
    .expect("router starts");
    // Its metrics port speaks plain HTTP in both runs (its REST port is TLS in one).
    let router_metrics = router.addr("metrics");

    let endpoints =
        Endpoints { registry: registry_addr.clone(), trainer: trainer.addr("trainer"), router: router.addr("router") };
    assert!(modelplane_tests::health_serving(&worker.addr("worker")).await.expect("worker health"));
    // The fourth role answers reflection in both versions too (the scenario asks the others).
    let reflected = modelplane_tests::reflected_services(&worker.addr("worker")).await.expect("worker reflection");
    assert_eq!(
        reflected,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "inference.GRPCInferenceService"
        ]
    );
    // A message over the 64 MiB limit is RESOURCE_EXHAUSTED (gRPC's and Triton's code, not
    // tonic's OUT_OF_RANGE): a unary call to the router (its pass-on path) and to a worker,
    // and a chunk on the registry's upload stream.
    for (addr, registry) in [(&router.addr("router"), false), (&worker.addr("worker"), false), (&registry_addr, true)] {
        let status = modelplane_tests::oversized_message_status(addr, registry).await.expect("refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{addr}: {status:?}");
        assert!(status.message().contains("too large"), "{addr}: {status:?}");
    }
    // How long the flip took is printed, not judged: speed belongs in benchmarks.
    let flip = scenario::run(&endpoints).await.expect("scenario passes");
    println!("alias flip took {flip:?} to show in predictions");

    // A second router with tight limits: a request over the element cap is refused
    // before it reaches a worker, and one client cannot hold more than one slot.
    let limited = Process::spawn_with_env(
        bin,
        "router-limited",
        &args(&[
            "router",
            "--etcd",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "",
            "--max-tensor-elements",
            "10",
            "--max-requests-per-client",
            "1",
        ]),
        &["router"],
        logs,
        env,
    )
    .expect("limited router starts");
    let limited_addr = limited.addr("router");
    modelplane_tests::wait_ready(&limited_addr, "houses", "", Duration::from_secs(60)).await.expect("ready");
    let four_rows = vec![vec![120.0f32, 3.0, 10.0]; 4];
    let too_big = modelplane_tests::predict(&limited_addr, "houses", "", &four_rows, true).await.expect_err("12 > 10");
    let status = too_big.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("hold 12 elements") && status.message().contains("at most 10"), "{status:?}");
    let mut client = modelplane_tests::inference(&limited_addr).await.expect("client");
    let one_row = modelplane_tests::infer_request("houses", "", "input", &[vec![120.0, 3.0, 10.0]], true);
    // Whether two of a burst's requests overlap at the router depends on the machine's
    // timing, so bursts repeat until one did (a burst that never overlaps proves nothing).
    let mut overlapped = false;
    for _ in 0..50 {
        let calls = (0..32).map(|_| {
            let (mut client, mut request) = (client.clone(), tonic::Request::new(one_row.clone()));
            request.metadata_mut().insert("x-modelplane-client", tonic::metadata::MetadataValue::from_static("team-a"));
            async move { client.model_infer(request).await.map(|_| ()).map_err(|status| status.code()) }
        });
        let outcomes = futures::future::join_all(calls).await;
        assert!(outcomes.iter().any(Result::is_ok), "some of team-a's requests are served: {outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(o, Ok(()) | Err(tonic::Code::ResourceExhausted))),
            "the rest are RESOURCE_EXHAUSTED: {outcomes:?}"
        );
        if outcomes.iter().any(Result::is_err) {
            overlapped = true;
            break;
        }
    }
    assert!(overlapped, "in 50 bursts of 32 concurrent requests, no two overlapped at the router");
    client.model_infer(one_row.clone()).await.expect("a request after the burst is served");
    drop(limited);

    // A 90/10 canary between v1 and v2: over 10,000 requests the split is within ±2 %.
    let mut registry_client = modelplane_tests::registry(&endpoints.registry).await.expect("client");
    let canary = pb::Deployment {
        model: "houses".into(),
        targets: vec![
            pb::DeploymentTarget { version: 1, weight: 90, ..Default::default() },
            pb::DeploymentTarget { version: 2, weight: 10, ..Default::default() },
        ],
        ..Default::default()
    };
    registry_client.set_deployment(pb::SetDeploymentRequest { deployment: Some(canary) }).await.expect("canary");
    for version in ["1", "2"] {
        modelplane_tests::wait_ready(&endpoints.router, "houses", version, Duration::from_secs(60))
            .await
            .expect("ready");
    }
    let rows = vec![vec![120.0f32, 3.0, 10.0]];
    let answered_by = |text: &str, version: &str| {
        metric(text, "modelplane_router_requests_total", &[("model", "houses"), ("version", version), ("code", "OK")])
            .unwrap_or(0.0)
    };
    let before = scrape(&router_metrics).await.expect("router metrics");
    let senders = (0..8).map(|_| {
        let (router, rows) = (endpoints.router.clone(), rows.clone());
        tokio::spawn(async move {
            let mut first = 0u32;
            for _ in 0..1250 {
                let (_, version) =
                    modelplane_tests::predict(&router, "houses", "", &rows, false).await.expect("canary request");
                first += u32::from(version == "1");
            }
            first
        })
    });
    let first: u32 = futures::future::join_all(senders).await.into_iter().map(|r| r.expect("task")).sum();
    let share = f64::from(first) / 10_000.0;
    assert!((share - 0.9).abs() <= 0.02, "v1 served {share:.3} of requests; expected 0.90 ± 0.02");
    // The router's metrics count the same split, request for request.
    let after = scrape(&router_metrics).await.expect("router metrics");
    assert_eq!(answered_by(&after, "1") - answered_by(&before, "1"), f64::from(first), "v1 in the metrics");
    assert_eq!(answered_by(&after, "2") - answered_by(&before, "2"), f64::from(10_000 - first), "v2 in the metrics");
    // Production (v2) with v1 as a shadow: every answer comes from v2, and v1's
    // statistics count a copy of each request.
    let v1_successes = |stats: modelplane_proto::inference::ModelStatisticsResponse| {
        stats
            .model_stats
            .iter()
            .filter(|s| s.version == "1")
            .filter_map(|s| s.inference_stats.as_ref())
            .map(|s| s.success.as_ref().map_or(0, |d| d.count))
            .sum::<u64>()
    };
    let mut inference = modelplane_tests::inference(&endpoints.router).await.expect("client");
    let stats_request =
        modelplane_proto::inference::ModelStatisticsRequest { name: "houses".into(), version: String::new() };
    // Requests so far went one at a time, so v1's count is settled.
    let before = v1_successes(inference.model_statistics(stats_request.clone()).await.expect("stats").into_inner());
    let shadowed = pb::Deployment {
        model: "houses".into(),
        targets: vec![
            pb::DeploymentTarget { alias: "production".into(), weight: 1, ..Default::default() },
            pb::DeploymentTarget { version: 1, shadow: true, ..Default::default() },
        ],
        ..Default::default()
    };
    registry_client.set_deployment(pb::SetDeploymentRequest { deployment: Some(shadowed) }).await.expect("shadow");
    // Until the router applies the new deployment (both targets at once), the canary may
    // still answer from v1: wait for 20 answers from v2 in a row (1e-20 under the canary).
    let (mut in_a_row, mut direct_v1, mut warm_up_v2) = (0, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_a_row < 20 {
        let (_, version) =
            modelplane_tests::predict(&endpoints.router, "houses", "", &rows, false).await.expect("infer");
        if version == "2" {
            in_a_row += 1;
            warm_up_v2 += 1;
        } else {
            (in_a_row, direct_v1) = (0, direct_v1 + 1);
        }
        assert!(Instant::now() < deadline, "the router never applied the shadowed deployment");
    }
    for _ in 0..40 {
        let (_, version) =
            modelplane_tests::predict(&endpoints.router, "houses", "", &rows, false).await.expect("infer");
        assert_eq!(version, "2", "a shadow never answers");
    }
    // Every one of the 40 was copied (and perhaps the warm-up's answers from v2): v1 saw
    // that many copies, and the router counted each one answered.
    let answered = |text: &str| {
        let labels = [("model", "houses"), ("version", "1"), ("outcome", "answered")];
        metric(text, "modelplane_router_shadow_copies_total", &labels).unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let copies = loop {
        let stats = inference.model_statistics(stats_request.clone()).await.expect("stats").into_inner();
        let copies = v1_successes(stats).saturating_sub(before + direct_v1);
        let counted = answered(&scrape(&router_metrics).await.expect("router metrics"));
        if copies >= 40 && counted == copies as f64 {
            break copies;
        }
        assert!(Instant::now() < deadline, "{copies} copies reached the shadow, {counted} counted, for 40 requests");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(copies <= 40 + warm_up_v2, "v1 answered {copies} copies for {} requests", 40 + warm_up_v2);
    // The shadow's answers show in the router's metrics, and no copy was dropped.
    let text = scrape(&router_metrics).await.expect("router metrics");
    let shadow = |outcome: &str| {
        let labels = [("model", "houses"), ("version", "1"), ("outcome", outcome)];
        metric(&text, "modelplane_router_shadow_copies_total", &labels)
    };
    assert_eq!((shadow("failed"), shadow("dropped")), (None, None), "{text}");
    // An unknown model is counted without its name; every RPC also counts per method.
    let refused = [("model", "other"), ("code", "NOT_FOUND")];
    let refused_before = metric(&text, "modelplane_router_requests_total", &refused).unwrap_or(0.0);
    let unknown = modelplane_tests::predict(&endpoints.router, "no-such-model", "", &rows, false).await;
    assert!(unknown.is_err(), "an unknown model is refused");
    let text = scrape(&router_metrics).await.expect("router metrics");
    assert_eq!(metric(&text, "modelplane_router_requests_total", &refused), Some(refused_before + 1.0), "{text}");
    assert!(!text.contains("no-such-model"), "a client's model name became a label: {text}");
    let infer = [("role", "router"), ("method", "/inference.GRPCInferenceService/ModelInfer")];
    let routed = metric(&text, "modelplane_grpc_requests_total", &[infer[0], infer[1], ("code", "OK")]);
    assert!(routed.is_some_and(|n| n >= 10_040.0), "router ModelInfer OK count {routed:?}");
    let seconds = metric(&text, "modelplane_grpc_request_duration_seconds_count", &infer);
    assert!(seconds >= routed, "every counted call is timed: {seconds:?} vs {routed:?}");
    // Each worker's own endpoint: per-version requests, batch sizes and per-RPC counts,
    // and between the two workers every request the router sent them.
    let mut worker_ok = 0.0;
    for process in [&worker, &worker_b] {
        let text = scrape(&process.addr("metrics")).await.expect("worker metrics");
        let success = [("model", "houses"), ("version", "1"), ("outcome", "success")];
        worker_ok += metric(&text, "modelplane_worker_requests_total", &success).unwrap_or(0.0);
        let executions = metric(&text, "modelplane_worker_batch_rows_count", &[("model", "houses")]);
        assert!(executions.is_some_and(|n| n > 0.0), "{text}");
        let worker_infer = [("role", "worker"), ("method", infer[1].1), ("code", "OK")];
        assert!(metric(&text, "modelplane_grpc_requests_total", &worker_infer).is_some_and(|n| n > 0.0), "{text}");
    }
    assert!(worker_ok >= f64::from(first) + 40.0, "workers answered {worker_ok} v1 requests; {first} + 40 were sent");
    let production = pb::Deployment {
        model: "houses".into(),
        targets: vec![pb::DeploymentTarget { alias: "production".into(), weight: 1, ..Default::default() }],
        ..Default::default()
    };
    registry_client.set_deployment(pb::SetDeploymentRequest { deployment: Some(production) }).await.expect("deploy");

    memory_placement(&mut registry_client, &endpoints.router).await;

    // Each event below runs under a steady load of four clients. The load goes on until
    // every client was answered a few times before the event and 20 times after it
    // (counts, not seconds, so a fast machine cannot end it early and a slow one only
    // takes longer); any failed request fails the test.
    let load_spec = LoadSpec {
        router: endpoints.router.clone(),
        model: "houses".into(),
        version: "production".into(),
        rows: rows.clone(),
        raw: false,
        clients: 4,
        pause: Duration::ZERO,
    };
    // Bounds a hang only.
    let patience = Duration::from_secs(120);

    // SIGTERM of a worker under load: it withdraws, answers what it took, ends the
    // streams the router keeps open to it and exits; no request fails.
    let mut worker_c = spawn_worker("worker-c");
    wait_until_served_by(&endpoints.router, &rows, &worker_c.addr("metrics")).await;
    let load = Load::start(&load_spec, "a worker drained");
    load.each_answered(5, patience).await.expect("load before the drain");
    let stopped = tokio::task::spawn_blocking(move || worker_c.terminate(Duration::from_secs(30))).await.expect("join");
    assert!(stopped.expect("worker-c exits after SIGTERM"), "worker-c's exit status was not success");
    load.each_answered(20, patience).await.expect("load after the drain");
    load.stop().await.expect("no request failed while a worker drained");

    // A worker that freezes (SIGSTOP: no crash, no closed connection) under load: the
    // router's keepalive ping finds it within seconds and its requests in flight are
    // answered by the other worker; no request fails or waits for the freeze to end.
    let mut worker_d = spawn_worker("worker-d");
    wait_until_served_by(&endpoints.router, &rows, &worker_d.addr("metrics")).await;
    let load = Load::start(&load_spec, "a worker froze");
    load.each_answered(5, patience).await.expect("load before the freeze");
    worker_d.freeze().expect("SIGSTOP");
    // Every client answered 20 times after the freeze: none is left waiting on it.
    load.each_answered(20, patience).await.expect("load after the freeze");
    let slowest = load.stop().await.expect("no request failed while a worker froze").slowest;
    // The keepalive pings every 2 s and gives up after 4, so a request waits 6-9 s at
    // worst; before it, the 10 + 20 s settings let requests wait ~27 s. 20 s tells the
    // two apart with room for a starved machine.
    assert!(slowest < Duration::from_secs(20), "a request waited {slowest:?} on the frozen worker");
    worker_d.kill().expect("kill -9 of the frozen worker");

    // A rolling restart under load: each worker in turn drains and exits, comes back
    // under its own id and serves again before the next one goes; no request fails.
    let load = Load::start(&load_spec, "the workers restarted one by one");
    for (process, id) in [(&mut worker, "worker-a"), (&mut worker_b, "worker-b")] {
        load.each_answered(5, patience).await.expect("load before a restart");
        let stopped = tokio::task::block_in_place(|| process.terminate(Duration::from_secs(30)));
        assert!(stopped.expect("stops"), "{id} did not exit cleanly on SIGTERM");
        *process = tokio::task::block_in_place(|| spawn_worker(id));
        wait_until_served_by(&endpoints.router, &rows, &process.addr("metrics")).await;
    }
    load.each_answered(20, patience).await.expect("load after the restarts");
    load.stop().await.expect("no request failed during the rolling restart");

    // etcd frozen for 10 s under load (SIGSTOP: a stalled disk or a long pause; no
    // connection closes). The workers' leases lapse meanwhile and etcd expires them as it
    // resumes, deleting both workers' records; the routers keep routing to the workers
    // that still answer while they register again. No request fails.
    let load = Load::start(&load_spec, "etcd froze");
    load.each_answered(5, patience).await.expect("load before etcd froze");
    etcd.freeze().expect("SIGSTOP etcd");
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.thaw().expect("SIGCONT etcd");
    // etcd expires the lapsed leases within a second of resuming; the workers notice at
    // their next keep-alive and register again under new leases.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_until_registered(&endpoints.registry, &["worker-a", "worker-b"]).await;
    load.each_answered(20, patience).await.expect("load after etcd resumed");
    load.stop().await.expect("no request failed while etcd was frozen");
    for (process, id) in [(&worker, "worker-a"), (&worker_b, "worker-b")] {
        let log = process.log_tail(400);
        assert!(log.contains("lease expired; granted a new one"), "{id} kept its lease through the freeze:\n{log}");
    }

    // The workers cut off from etcd for 10 s while the router and registry still reach
    // it: the leases lapse and the records go while etcd runs on. No request fails, and
    // the workers register again when the partition heals.
    let load = Load::start(&load_spec, "the workers were cut off from etcd");
    load.each_answered(5, patience).await.expect("load before the partition");
    partition.cut();
    wait_until_registered(&endpoints.registry, &[]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    load.each_answered(5, patience).await.expect("load during the partition");
    partition.heal();
    wait_until_registered(&endpoints.registry, &["worker-a", "worker-b"]).await;
    load.each_answered(20, patience).await.expect("load after the partition healed");
    load.stop().await.expect("no request failed while the workers were cut off from etcd");

    // kill -9 of one of two workers under concurrent load: no request fails.
    let load = Load::start(&load_spec, "a worker died");
    load.each_answered(5, patience).await.expect("load before the kill");
    worker_b.kill().expect("kill -9 of worker-b");
    load.each_answered(20, patience).await.expect("load after the kill");
    load.stop().await.expect("no request failed while a worker died");
    // Its lease still removes a worker that is really gone.
    wait_until_registered(&endpoints.registry, &["worker-a"]).await;

    // etcd down for 10 s under load: routers and workers serve from their last state,
    // and an alias flip made after etcd returns takes effect.
    let rows = vec![vec![120.0f32, 3.0, 10.0]];
    let load = Load::start(
        &LoadSpec { rows: rows.clone(), pause: Duration::from_millis(20), ..load_spec.clone() },
        "etcd was down",
    );
    load.each_answered(1, patience).await.expect("load before etcd stops");
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.each_answered(10, patience).await.expect("load while etcd is down");
    let tally = load.stop().await.expect("no request failed while etcd was down");
    assert_eq!(tally.by_version.keys().collect::<Vec<_>>(), ["2"], "production served v2: {tally:?}");
    etcd.resume().expect("etcd restarts");
    let flip_back =
        pb::SetAliasRequest { model: "houses".into(), alias: "production".into(), version: 1, reason: String::new() };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The registry's etcd client reconnects on its own; retry until it has.
        match modelplane_tests::registry(&endpoints.registry).await.expect("client").set_alias(flip_back.clone()).await
        {
            Ok(_) => break,
            Err(status) => assert!(Instant::now() < deadline, "registry never reached etcd again: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let (_, version) = modelplane_tests::predict(&endpoints.router, "houses", "production", &rows, false)
            .await
            .expect("inference");
        if version == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the flip made after etcd returned never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A clean stop: every role drains and exits 0 on SIGTERM. Between the last worker's
    // exit and the registry's, the registry still judges deployments by that worker.
    for process in [&mut router, &mut worker] {
        assert!(process.terminate(Duration::from_secs(30)).expect("stops"), "exit status not success");
    }
    placement_without_live_workers(&endpoints.registry).await;
    for process in [&mut trainer, &mut registry] {
        assert!(process.terminate(Duration::from_secs(30)).expect("stops"), "exit status not success");
    }

    // Traces cross process boundaries: the worker's ModelInfer span is a child of the
    // router's, and the registry's UploadVersion span a child of the trainer's job span.
    let spans = collector.spans();
    let infer = "/inference.GRPCInferenceService/ModelInfer";
    let linked = |parent_service: &str, parent_name: &str, child_service: &str, child_name: &str| {
        spans.iter().filter(|s| s.service == parent_service && s.name == parent_name).any(|parent| {
            spans.iter().any(|child| {
                child.service == child_service
                    && child.name == child_name
                    && child.trace_id == parent.trace_id
                    && child.parent_span_id == parent.span_id
            })
        })
    };
    let names: Vec<(String, String)> = spans.iter().map(|s| (s.service.clone(), s.name.clone())).collect();
    assert!(linked("router", infer, "modelplane-worker", infer), "router → worker not linked: {names:?}");
    let router_span = spans.iter().find(|s| s.service == "router").expect("the router's spans carry OTEL_SERVICE_NAME");
    assert_eq!(
        router_span.resource.get("k8s.pod.name").map(String::as_str),
        Some("router-0"),
        "{:?}",
        router_span.resource
    );
    assert_eq!(router_span.resource.get("k8s.namespace.name").map(String::as_str), Some("ml"));
    assert!(!spans.iter().any(|s| s.service == "modelplane-router"), "the default name replaced the operator's");
    assert!(
        linked(
            "modelplane-trainer",
            "train_job",
            "modelplane-registry",
            "/modelplane.registry.v1.Registry/UploadVersion"
        ),
        "trainer → registry not linked: {names:?}"
    );
    assert!(
        spans.iter().any(|s| s.service == "modelplane-worker"
            && s.name == infer
            && s.attributes.get("model").map(String::as_str) == Some("houses")
            && s.attributes.contains_key("version")),
        "worker ModelInfer spans carry no model/version fields"
    );
}

/// Waits until the registry lists exactly the workers `ids` (their records in etcd).
async fn wait_until_registered(registry: &str, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = match modelplane_tests::registry(registry).await {
            Ok(mut client) => client.list_workers(pb::ListWorkersRequest::default()).await.ok(),
            Err(_) => None,
        };
        let mut listed: Vec<String> =
            listed.map(|r| r.into_inner().workers.into_iter().map(|w| w.id).collect()).unwrap_or_default();
        listed.sort();
        if listed == ids {
            return;
        }
        assert!(Instant::now() < deadline, "the registry lists workers {listed:?}, not {ids:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends requests until the worker whose metrics are at `metrics` has answered one.
async fn wait_until_served_by(router: &str, rows: &[Vec<f32>], metrics: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        modelplane_tests::predict(router, "houses", "production", rows, false).await.expect("infer");
        let text = scrape(metrics).await.expect("worker metrics");
        let answered = [("model", "houses"), ("outcome", "success")];
        if metric(&text, "modelplane_worker_requests_total", &answered).is_some_and(|n| n > 0.0) {
            return;
        }
        assert!(Instant::now() < deadline, "the router never sent the new worker a request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With every worker gone (one drained and left, the other killed earlier and its lease
/// lapsed), a replica larger than the workers last seen serving is still refused, and
/// one they could hold is accepted.
async fn placement_without_live_workers(registry_addr: &str) {
    let mut registry = modelplane_tests::registry(registry_addr).await.expect("client");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let workers = registry.list_workers(pb::ListWorkersRequest {}).await.expect("workers").into_inner().workers;
        if workers.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the killed worker's lease never lapsed: {workers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let churn = |memory_bytes: u64| pb::SetDeploymentRequest {
        deployment: Some(pb::Deployment {
            model: "churn".into(),
            targets: vec![pb::DeploymentTarget { version: 1, weight: 1, ..Default::default() }],
            resources: Some(pb::Resources { memory_bytes: Some(memory_bytes) }),
            ..Default::default()
        }),
    };
    let refused = registry.set_deployment(churn(2 << 30)).await.expect_err("2 GiB > the 1 GiB last seen");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("needs 2.0 GiB (as stated), more than any worker seen serving ")
            && message.contains(" ago (none is live now) can hold")
            && message.contains("has 1.0 GiB"),
        "{message}"
    );
    registry.set_deployment(churn(512 << 20)).await.expect("512 MiB fits the workers last seen");
}

/// Workers place deployments within their memory (1 GiB each here): a replica larger
/// than every worker is refused, and one that no worker has room left for is not served,
/// with the reason in the router's answer.
async fn memory_placement(registry: &mut pb::registry_client::RegistryClient<modelplane_tests::Channel>, router: &str) {
    let with_memory = |model: &str, memory_bytes: Option<u64>| pb::SetDeploymentRequest {
        deployment: Some(pb::Deployment {
            model: model.into(),
            targets: vec![pb::DeploymentTarget { version: 1, weight: 1, ..Default::default() }],
            resources: memory_bytes.map(|bytes| pb::Resources { memory_bytes: Some(bytes) }),
            ..Default::default()
        }),
    };
    let get = pb::GetDeploymentRequest { model: "churn".into() };
    let before = registry.get_deployment(get.clone()).await.expect("churn is deployed").into_inner();
    let refused = registry.set_deployment(with_memory("churn", Some(2 << 30))).await.expect_err("2 GiB > 1 GiB");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("needs 2.0 GiB (as stated)") && refused.message().contains("has 1.0 GiB"),
        "{refused:?}"
    );
    let after = registry.get_deployment(get).await.expect("still deployed").into_inner();
    assert_eq!(after, before, "a refused deployment changes nothing");
    let zero = registry.set_deployment(with_memory("churn", Some(0))).await.expect_err("0 bytes");
    assert_eq!(zero.code(), tonic::Code::InvalidArgument, "{zero:?}");

    // churn takes 700 MiB of each worker. Redeploying tickets, placed now, at 700 MiB
    // would leave it no worker, so it is refused; deployed anew, it is accepted (it fits
    // an empty worker) and waits for room.
    registry.set_deployment(with_memory("churn", Some(700 << 20))).await.expect("700 MiB fits 1 GiB");
    let kept = registry.set_deployment(with_memory("tickets", Some(700 << 20))).await.expect_err("would lose workers");
    assert_eq!(kept.code(), tonic::Code::FailedPrecondition, "{kept:?}");
    assert!(kept.message().starts_with("the deployment of tickets stays as it is: "), "{kept:?}");
    registry.delete_deployment(pb::DeleteDeploymentRequest { model: "tickets".into() }).await.expect("undeploy");
    registry.set_deployment(with_memory("tickets", Some(700 << 20))).await.expect("accepted: it fits an empty worker");
    let texts = modelplane_tests::text_request("tickets", &["my parcel never arrived"], false);
    let mut client = modelplane_tests::inference(router).await.expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until the router sees the workers' records without tickets, a worker that already
    // unloaded it may answer that it is not loaded there.
    let unplaced = loop {
        match client.model_infer(texts.clone()).await {
            Err(status) if status.message().starts_with("no ready replica of tickets") => break status,
            outcome => assert!(Instant::now() < deadline, "tickets is still served: {outcome:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(unplaced.code(), tonic::Code::Unavailable, "{unplaced:?}");
    // Triton's repository index gives the same reason.
    let index = client
        .repository_index(modelplane_proto::inference::RepositoryIndexRequest::default())
        .await
        .expect("index")
        .into_inner();
    let tickets = index.models.iter().find(|m| m.name == "tickets").expect("tickets is listed");
    assert_eq!(tickets.state, "UNAVAILABLE", "{tickets:?}");
    assert!(tickets.reason.starts_with("tickets: no worker holds it; a replica needs 700.0 MiB"), "{tickets:?}");
    let message = unplaced.message();
    assert!(
        message.starts_with("no ready replica of tickets v1: tickets: no worker holds it; a replica needs 700.0 MiB")
            && message.contains("the most any worker has left is 324.0 MiB"),
        "{message}"
    );
    // ListWorkers shows each worker's 1 GiB with churn's 700 MiB placed on it.
    let workers = registry.list_workers(pb::ListWorkersRequest {}).await.expect("workers").into_inner().workers;
    assert_eq!(workers.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["worker-a", "worker-b"]);
    for worker in &workers {
        assert_eq!(worker.memory_capacity_bytes, Some(1 << 30), "{worker:?}");
        assert!((700 << 20..(700 << 20) + (1 << 20)).contains(&worker.memory_placed_bytes), "{worker:?}");
        let churn = worker.loaded.iter().find(|v| v.model == "churn" && v.state == "ready").expect("churn is held");
        assert!(churn.memory_bytes.is_some_and(|bytes| bytes > 0), "measured once loaded: {churn:?}");
    }
    // Back to the estimate: both are served again.
    registry.set_deployment(with_memory("churn", None)).await.expect("deploy churn");
    registry.set_deployment(with_memory("tickets", None)).await.expect("deploy tickets");
    modelplane_tests::wait_ready(router, "tickets", "", Duration::from_secs(60)).await.expect("tickets ready");
    client.model_infer(texts).await.expect("tickets is served again");
}
