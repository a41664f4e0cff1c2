//! `modelplane bench` against `modelplane bench-echo`, directly and behind the bare
//! forwarding proxy the serving benchmark uses as the floor of one more gRPC hop.

use std::path::Path;
use std::time::Duration;

use modelplane_tests::{Process, clean_command, output_within};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_modelplane"))
}

/// One short closed-loop run at concurrency 2 (unary calls, or `--stream`); the JSON
/// line `bench` prints.
fn bench(target: &str, extra: &[&str]) -> serde_json::Value {
    let output = output_within(
        clean_command(bin())
            .args(["bench", "--target", target, "--model", "echoed", "--concurrency", "2"])
            .args(["--duration-secs", "0.5", "--warmup-secs", "0.1", "--rows", "3", "--format", "json"])
            .args(extra),
        Duration::from_secs(300),
    )
    .expect("bench runs");
    assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a result line")).expect("bench prints JSON")
}

#[test]
fn bench_measures_the_echo_server_directly_and_through_the_forwarding_proxy() {
    let logs = tempfile::tempdir().expect("temp dir");
    let listen = ["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    let mut echo =
        Process::spawn(bin(), "echo", &[&["bench-echo".to_owned()], &listen[..]].concat(), &["echo"], logs.path())
            .expect("echo starts");
    let forward = ["bench-echo".to_owned(), "--forward-to".to_owned(), echo.addr("echo")];
    let proxy = Process::spawn(bin(), "proxy", &[&forward[..], &listen[..]].concat(), &["echo"], logs.path())
        .expect("proxy starts");

    // Unary calls to both; one ModelStreamInfer stream per loop to the echo server.
    for (target, extra) in [(echo.addr("echo"), &[][..]), (proxy.addr("echo"), &[]), (echo.addr("echo"), &["--stream"])]
    {
        let result = bench(&target, extra);
        assert_eq!(result["errors"], 0, "{target}: {result}");
        assert_eq!(result["rows"], 3, "{result}");
        assert!(result["requests_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{target}: {result}");
        let (p50, p99) = (result["p50_us"].as_u64(), result["p99_us"].as_u64());
        assert!(p50.is_some_and(|p50| p50 > 0) && p99 >= p50, "percentiles in µs, p99 >= p50: {result}");
    }

    // The proxy answers nothing itself: with the echo server gone every call fails.
    echo.kill().expect("kill -9 of the echo server");
    let result = bench(&proxy.addr("echo"), &[]);
    assert!(result["errors"].as_u64().is_some_and(|errors| errors > 0), "{result}");
    assert_eq!(result["requests_per_sec"], 0.0, "{result}");
    // The proxy forwards unary calls only: a stream is refused, and counted as failed.
    let result = bench(&proxy.addr("echo"), &["--stream"]);
    assert!(result["errors"].as_u64().is_some_and(|errors| errors > 0), "{result}");
}
