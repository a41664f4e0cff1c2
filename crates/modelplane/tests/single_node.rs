//! `modelplane up` (every role in one process on the embedded store): the same scenario
//! as the cluster, and the README walkthrough run line by line through the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use modelplane_tests::scenario::{self, Endpoints};
use modelplane_tests::{Process, clean_command, output_within};

fn start_up(dir: &Path) -> Process {
    start_up_with(dir, &[])
}

fn start_up_with(dir: &Path, extra: &[&str]) -> Process {
    let args: Vec<String> = [
        "up",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--registry-port",
        "0",
        "--trainer-port",
        "0",
        "--worker-port",
        "0",
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect();
    Process::spawn(
        Path::new(env!("CARGO_BIN_EXE_modelplane")),
        "up",
        &args,
        &["registry", "trainer", "worker", "router"],
        dir,
    )
    .expect("modelplane up starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_embedded_store_passes_the_cluster_scenario() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut up = start_up(dir.path());
    let endpoints = Endpoints { registry: up.addr("registry"), trainer: up.addr("trainer"), router: up.addr("router") };
    // How long the flip took is printed, not judged: speed belongs in benchmarks.
    let flip = scenario::run(&endpoints).await.expect("scenario passes");
    println!("alias flip took {flip:?} to show in predictions");
    assert!(up.terminate(Duration::from_secs(30)).expect("stops"), "up did not exit cleanly on SIGTERM");
}

/// `up` with 64 KiB for models: the CLI's deploy is refused for a replica larger than
/// that, times out naming the reason when the room is taken, and fits on the estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_places_deployments_within_its_memory_capacity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = start_up_with(dir.path(), &["--memory-capacity", "64KiB"]);
    let (registry, trainer) = (up.addr("registry"), up.addr("trainer"));
    for (model, kind, csv, target) in [
        ("houses", "linear", modelplane_tests::houses_csv(200), "price"),
        ("churn", "logistic", modelplane_tests::churn_csv(200), "churned"),
    ] {
        modelplane_tests::upload_dataset(&registry, model, &csv).await.expect("upload");
        modelplane_tests::train(&trainer, model, kind, model, target, &[("epochs", "2")]).await.expect("train");
    }
    let cli = |args: &[&str]| {
        let output = output_within(
            clean_command(env!("CARGO_BIN_EXE_modelplane"))
                .args(args)
                .env("MODELPLANE_REGISTRY", &registry)
                .env("MODELPLANE_ROUTER", up.addr("router")),
            Duration::from_secs(300),
        )
        .expect("runs");
        let text = if output.status.success() { &output.stdout } else { &output.stderr };
        (output.status.success(), String::from_utf8_lossy(text).into_owned())
    };
    let (ok, stderr) = cli(&["deploy", "houses", "--version", "1", "--memory", "1MiB"]);
    assert!(!ok && stderr.contains("needs 1.0 MiB (as stated)") && stderr.contains("has 64.0 KiB"), "{stderr}");
    let (ok, stderr) = cli(&["deploy", "houses", "--version", "1", "--memory", "40KiB", "--wait", "30"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = cli(&["deploy", "churn", "--version", "1", "--memory", "40KiB", "--wait", "2"]);
    assert!(!ok, "churn cannot have room beside houses");
    assert!(
        stderr.contains(
            "not ready within 2 s: churn: no worker holds it; a replica needs 40.0 KiB (as its deployment states) \
             and the most any worker has left is 24.0 KiB (worker-local)"
        ),
        "{stderr}"
    );
    let (ok, stderr) = cli(&["deploy", "churn", "--version", "1", "--wait", "30"]);
    assert!(ok, "twice churn's artifact fits in the 24 KiB left: {stderr}");
    // An alias flip the deployment follows must fit too: an MLP of 2 x 128 hidden units
    // (~70 KB of weights) would need more than the whole worker.
    let params = [("hidden", "128,128"), ("epochs", "1")];
    modelplane_tests::train(&trainer, "churn", "mlp", "churn", "churned", &params).await.expect("train v2");
    for step in [&["alias", "set", "churn", "production", "1"][..], &["deploy", "churn", "--alias", "production"]] {
        let (ok, out) = cli(step);
        assert!(ok, "{step:?}: {out}");
    }
    let (ok, stderr) = cli(&["alias", "set", "churn", "production", "2"]);
    assert!(!ok && stderr.contains("churn:production stays where it is"), "{stderr}");
    assert!(stderr.contains("with v2 a replica of churn needs") && stderr.contains("has 64.0 KiB"), "{stderr}");
    // v3 (2 x 64 hidden units) fits the worker but not the 24 KiB houses leaves, and
    // houses was deployed first: the flip would leave churn nowhere, so it is refused too.
    let params = [("hidden", "64,64"), ("epochs", "1")];
    let v3 = modelplane_tests::train(&trainer, "churn", "mlp", "churn", "churned", &params).await.expect("train v3");
    let size = modelplane_tests::registry(&registry)
        .await
        .expect("client")
        .get_version(modelplane_proto::registry::GetVersionRequest { model: "churn".into(), version: "3".into() })
        .await
        .expect("v3")
        .into_inner()
        .size_bytes;
    assert!((12 * 1024..32 * 1024).contains(&size), "v3 is {size} bytes; the test needs 12-32 KiB (job {})", v3.id);
    let (ok, stderr) = cli(&["alias", "set", "churn", "production", "3"]);
    let lost = "the deployment of churn would lose every worker (churn: no worker holds it";
    assert!(!ok && stderr.contains("churn:production stays where it is: ") && stderr.contains(lost), "{stderr}");
    // So is a redeploy that adds v3 as a shadow: the replica would need v1 and v3.
    let (ok, stderr) = cli(&["deploy", "churn", "--alias", "production", "--shadow", "3"]);
    assert!(!ok && stderr.contains("the deployment of churn stays as it is: ") && stderr.contains(lost), "{stderr}");
    // `workers` shows the one worker, its capacity, what is placed on it and what it holds.
    let (ok, listing) = cli(&["workers"]);
    assert!(ok, "{listing}");
    let mut lines = listing.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("worker-local\t127.0.0.1:") && header.ends_with("KiB of 64.0 KiB placed"), "{listing}");
    // Each version with the memory its parameters took once loaded.
    let held: Vec<Vec<&str>> = lines.map(|line| line.split('\t').collect()).collect();
    assert_eq!(
        held.iter().map(|fields| &fields[..2]).collect::<Vec<_>>(),
        [["  churn v1", "ready"], ["  houses v1", "ready"]]
    );
    assert!(held.iter().all(|fields| fields.len() == 3 && fields[2].ends_with(" B")), "{listing}");
    let (ok, json) = cli(&["workers", "--output", "json"]);
    let worker: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert!(ok && worker["memory_capacity_bytes"] == 64 * 1024, "{json}");
    let measured = worker["loaded"][0]["memory_bytes"].as_u64().expect("measured");
    assert!(measured > 0 && measured < 1024, "a 3-feature logistic model's parameters: {json}");
    let placed = worker["memory_placed_bytes"].as_u64().expect("placed");
    assert!(placed > 40 * 1024 && placed <= 64 * 1024, "houses' 40 KiB and churn's estimate: {json}");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shell lines of the README block that follows `<!-- walkthrough -->`.
fn walkthrough_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let block = readme.split("<!-- walkthrough -->").nth(1).expect("README has a walkthrough marker");
    let body = block.split("```").nth(1).expect("walkthrough code block");
    body.lines()
        .skip(1) // the fence's language tag
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = start_up(dir.path());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_modelplane")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut outputs = Vec::new();
    let lines = walkthrough_lines();
    assert!(lines.iter().any(|l| l.starts_with("modelplane predict")), "walkthrough has no predict step: {lines:?}");
    for line in &lines {
        let output = output_within(
            clean_command("sh")
                .arg("-c")
                .arg(line)
                .current_dir(&work)
                .env("PATH", &path)
                .env("MODELPLANE_REPO", repo_root())
                .env("MODELPLANE_REGISTRY", up.addr("registry"))
                .env("MODELPLANE_TRAINER", up.addr("trainer"))
                .env("MODELPLANE_ROUTER", up.addr("router"))
                // As a user beside `up`: the CLI finds the admin key in up's data dir.
                .env_remove("MODELPLANE_API_KEY")
                .env("MODELPLANE_DATA_DIR", dir.path().join("data")),
            Duration::from_secs(600),
        )
        .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "`{line}` failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        outputs.push((line.clone(), stdout));
    }
    let predictions: Vec<serde_json::Value> = outputs
        .iter()
        .filter(|(line, _)| line.starts_with("modelplane predict"))
        .map(|(_, out)| serde_json::from_str(out.trim()).expect("predict prints JSON"))
        .collect();
    assert_eq!(predictions.len(), 3, "expected a houses, a churn and a tickets prediction");
    // houses: 50*120 + 10000*3 - 2000*10 + 30000 = 46000 (the generator's noise is ±3000).
    let price = predictions[0]["outputs"][0]["data"][0].as_f64().expect("price");
    assert!((price - 46_000.0).abs() < 2_500.0, "predicted price {price}");
    // churn: many support calls and short tenure churn; none and long tenure stay.
    let probabilities = &predictions[1]["outputs"][0]["data"];
    assert!(
        probabilities[1].as_f64().expect("p") > 0.5 && probabilities[3].as_f64().expect("p") < 0.5,
        "{probabilities}"
    );
    // tickets: the label output names the topic.
    let outputs = predictions[2]["outputs"].as_array().expect("outputs");
    let labels = outputs.iter().find(|o| o["name"] == "label").expect("label output");
    assert_eq!(labels["data"], serde_json::json!(["billing", "delivery"]));
}
