//! The trainer as a job system, on a real etcd with two trainer processes: submission
//! checks, failures that name row and column, a job whose trainer is killed (-9) being
//! claimed again and completed, cancellation of queued and running jobs, and listing.

use std::path::Path;
use std::time::{Duration, Instant};

use modelplane_proto::registry as pb;
use modelplane_proto::trainer::{self as tpb, trainer_client::TrainerClient};
use modelplane_tests::{Etcd, Process, channel, houses_csv, registry, upload_dataset};
use tonic::Code;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn spec(model: &str, kind: &str, dataset: &str, target: &str, params: &[(&str, &str)]) -> tpb::JobSpec {
    tpb::JobSpec {
        model: model.into(),
        kind: kind.into(),
        dataset: dataset.into(),
        dataset_sha256: String::new(),
        target: target.into(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        promote_if: None,
    }
}

/// Submits a spec that must be refused; returns the status.
async fn refused(client: &TrainerClient<modelplane_tests::Channel>, spec: tpb::JobSpec) -> tonic::Status {
    client.clone().submit_job(tpb::SubmitJobRequest { spec: Some(spec) }).await.expect_err("refused")
}

/// Trains to the end and returns the finished job.
async fn run_job(client: &mut TrainerClient<modelplane_tests::Channel>, spec: tpb::JobSpec) -> tpb::Job {
    let job = client.submit_job(tpb::SubmitJobRequest { spec: Some(spec) }).await.expect("submit").into_inner();
    wait_for(client, &job.id, Duration::from_secs(300), |j| {
        !matches!(state(j), tpb::JobState::Queued | tpb::JobState::Running)
    })
    .await
}

async fn get(client: &mut TrainerClient<modelplane_tests::Channel>, id: &str) -> tpb::Job {
    client.get_job(tpb::GetJobRequest { id: id.into() }).await.expect("get job").into_inner()
}

/// Polls a job until `done` holds for it.
async fn wait_for(
    client: &mut TrainerClient<modelplane_tests::Channel>,
    id: &str,
    timeout: Duration,
    done: impl Fn(&tpb::Job) -> bool,
) -> tpb::Job {
    let deadline = Instant::now() + timeout;
    loop {
        let job = get(client, id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not get there in {timeout:?}: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(job: &tpb::Job) -> tpb::JobState {
    tpb::JobState::try_from(job.state).unwrap_or(tpb::JobState::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trainers_share_a_queue_survive_kill_9_and_cancel() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = Etcd::start().expect("etcd starts");
    let blob_dir = dir.path().join("blobs").display().to_string();
    let registry_process = Process::spawn(
        bin,
        "registry",
        &args(&["registry", "--etcd", &etcd.url, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir]),
        &["registry"],
        dir.path(),
    )
    .expect("registry starts");
    let registry_addr = registry_process.addr("registry");
    let mut trainers: Vec<(String, Process)> = ["trainer-a", "trainer-b"]
        .iter()
        .map(|id| {
            let process = Process::spawn(
                bin,
                id,
                &args(&[
                    "trainer",
                    "--etcd",
                    &etcd.url,
                    "--listen",
                    "127.0.0.1:0",
                    "--registry",
                    &registry_addr,
                    "--id",
                    id,
                    // The default lease (5 s): a shorter one can lapse on a starved
                    // machine while its trainer still runs the job.
                    "--max-dataset-bytes",
                    "200000",
                ]),
                &["trainer"],
                dir.path(),
            )
            .expect("trainer starts");
            ((*id).to_owned(), process)
        })
        .collect();
    let mut client = TrainerClient::new(channel(&trainers[0].1.addr("trainer")).await.expect("channel"));
    let big = upload_dataset(&registry_addr, "big", &houses_csv(4000)).await.expect("upload");

    // Submission checks name what is wrong.
    let status = refused(&client, spec("m", "linear", "big", "price", &[("learning_rate", "-1")])).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("learning_rate") && status.message().contains("allowed (0, 10]"),
        "{}",
        status.message()
    );
    let status = refused(&client, spec("m", "forest", "big", "price", &[])).await;
    assert!(
        status.code() == Code::InvalidArgument && status.message().contains("expected linear, logistic"),
        "{status:?}"
    );
    let status = refused(&client, spec("m", "linear", "nope", "price", &[])).await;
    assert!(status.code() == Code::NotFound && status.message().contains("upload it first"), "{status:?}");
    let status = refused(&client, spec("m", "linear", "big", "cost", &[])).await;
    assert!(
        status.code() == Code::InvalidArgument && status.message().contains("area, rooms, age, price"),
        "{status:?}"
    );
    upload_dataset(&registry_addr, "huge", &houses_csv(12_000)).await.expect("upload");
    let status = refused(&client, spec("m", "linear", "huge", "price", &[])).await;
    assert!(status.code() == Code::ResourceExhausted && status.message().contains("at most 200000"), "{status:?}");

    // A CSV with a bad value fails the job, naming row and column. (Text in a feature
    // column is a category; text in a regressor's target is an error.)
    upload_dataset(&registry_addr, "broken", "area,rooms,price\n1,2,3\n4,5,6\n7,8,many\n").await.expect("upload");
    let job = client
        .submit_job(tpb::SubmitJobRequest { spec: Some(spec("m", "linear", "broken", "price", &[])) })
        .await
        .expect("submit")
        .into_inner();
    let job = wait_for(&mut client, &job.id, Duration::from_secs(120), |j| state(j) == tpb::JobState::Failed).await;
    assert!(job.error.contains("row 3, column \"price\": \"many\" is not a number"), "{}", job.error);

    // kill -9 of the trainer running a job: the other trainer claims it and completes it.
    let long = spec(
        "reclaimed",
        "mlp_regressor",
        "big",
        "price",
        &[("hidden", "128,128"), ("epochs", "25"), ("batch_size", "32")],
    );
    let job = client.submit_job(tpb::SubmitJobRequest { spec: Some(long) }).await.expect("submit").into_inner();
    let running = wait_for(&mut client, &job.id, Duration::from_secs(120), |j| {
        state(j) == tpb::JobState::Running && j.progress.as_ref().is_some_and(|p| p.epoch >= 1)
    })
    .await;
    let first = running.claimed_by.clone();
    let victim = trainers.iter().position(|(id, _)| *id == first).expect("claimed by a known trainer");
    let (_, mut killed) = trainers.remove(victim);
    let survivor = trainers[0].0.clone();
    let mut client = TrainerClient::new(channel(&trainers[0].1.addr("trainer")).await.expect("channel"));
    // Frozen first, so that however fast this machine trains, the job cannot finish
    // between seeing it run and the kill: it must still be running, unfinished, then.
    killed.freeze().expect("SIGSTOP of the claiming trainer");
    let frozen = get(&mut client, &job.id).await;
    assert_eq!(state(&frozen), tpb::JobState::Running, "the job ended before its trainer froze: {frozen:?}");
    assert_eq!(frozen.claimed_by, first, "{frozen:?}");
    killed.kill().expect("kill -9 of the claiming trainer");
    let done = wait_for(&mut client, &job.id, Duration::from_secs(300), |j| {
        !matches!(state(j), tpb::JobState::Queued | tpb::JobState::Running)
    })
    .await;
    assert_eq!(state(&done), tpb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.claimed_by, survivor, "the surviving trainer finished the job");
    let versions = registry(&registry_addr)
        .await
        .expect("registry")
        .list_versions(pb::ListVersionsRequest { model: "reclaimed".into(), ..Default::default() })
        .await
        .expect("versions")
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1, "exactly one version registered: {versions:?}");
    let lineage = versions[0].lineage.clone().unwrap_or_default();
    assert_eq!((lineage.job_id.as_str(), lineage.dataset_sha256.as_str()), (job.id.as_str(), big.sha256.as_str()));
    assert_eq!(lineage.params.get("trainer").map(String::as_str), Some(survivor.as_str()));
    assert!(
        lineage.params.contains_key("duration_ms") && lineage.params.contains_key("trainer_version"),
        "{lineage:?}"
    );

    // Cancellation: a queued job at once, a running one after its epoch.
    let endless = spec("cancelled", "mlp_regressor", "big", "price", &[("hidden", "64"), ("epochs", "100000")]);
    let running =
        client.submit_job(tpb::SubmitJobRequest { spec: Some(endless.clone()) }).await.expect("submit").into_inner();
    wait_for(&mut client, &running.id, Duration::from_secs(120), |j| state(j) == tpb::JobState::Running).await;
    let queued = client.submit_job(tpb::SubmitJobRequest { spec: Some(endless) }).await.expect("submit").into_inner();
    // The only trainer left gets two whole epochs of the running job to claim the queued
    // one: time measured in its own work, not in seconds.
    let epoch = get(&mut client, &running.id).await.progress.map_or(0, |p| p.epoch);
    wait_for(&mut client, &running.id, Duration::from_secs(120), |j| {
        j.progress.as_ref().is_some_and(|p| p.epoch >= epoch + 2)
    })
    .await;
    assert_eq!(state(&get(&mut client, &queued.id).await), tpb::JobState::Queued, "one trainer runs one job at a time");
    let cancelled =
        client.cancel_job(tpb::CancelJobRequest { id: queued.id.clone() }).await.expect("cancel").into_inner();
    assert_eq!(state(&cancelled), tpb::JobState::Cancelled);
    let progress = wait_for(&mut client, &running.id, Duration::from_secs(120), |j| {
        j.progress.as_ref().is_some_and(|p| p.epoch >= 2)
    })
    .await;
    let progress = progress.progress.unwrap_or_default();
    assert!(
        progress.rows_per_second > 0.0 && progress.eta_seconds > 0.0 && progress.validation_loss.is_some(),
        "{progress:?}"
    );
    let asked = client.cancel_job(tpb::CancelJobRequest { id: running.id.clone() }).await.expect("cancel").into_inner();
    assert!(asked.cancel_requested);
    let mut watch =
        client.watch_job(tpb::WatchJobRequest { id: running.id.clone() }).await.expect("watch").into_inner();
    let mut last = None;
    while let Some(update) =
        tokio::time::timeout(Duration::from_secs(120), watch.message()).await.expect("watch ends").expect("watch")
    {
        last = Some(update);
    }
    assert_eq!(last.map(|j| state(&j)), Some(tpb::JobState::Cancelled));
    let status = registry(&registry_addr)
        .await
        .expect("registry")
        .get_model(pb::GetModelRequest { name: "cancelled".into() })
        .await;
    assert_eq!(status.expect_err("no version, no model").code(), Code::NotFound);

    // Listing filters by state and model, newest first.
    let listed = client
        .list_jobs(tpb::ListJobsRequest { state: tpb::JobState::Cancelled as i32, model: String::new() })
        .await
        .expect("list")
        .into_inner()
        .jobs;
    let ids: Vec<&str> = listed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [queued.id.as_str(), running.id.as_str()]);
    let by_model =
        client.list_jobs(tpb::ListJobsRequest { state: 0, model: "m".into() }).await.expect("list").into_inner().jobs;
    assert_eq!(by_model.len(), 1, "only the broken-CSV job trained model m");

    // promote_if: the first version takes the alias; a worse one does not; both audited.
    let rule = |lower_is_better| tpb::PromoteRule { alias: "production".into(), metric: "r2".into(), lower_is_better };
    let good = tpb::JobSpec {
        promote_if: Some(rule(false)),
        ..spec("promoted", "linear", "big", "price", &[("epochs", "30")])
    };
    let first = run_job(&mut client, good).await;
    assert_eq!(state(&first), tpb::JobState::Succeeded, "{first:?}");
    assert!(first.promotion.starts_with("promoted production to v1: r2 "), "{}", first.promotion);
    let poor = tpb::JobSpec {
        promote_if: Some(rule(false)),
        ..spec("promoted", "linear", "big", "price", &[("epochs", "1"), ("learning_rate", "0.0001")])
    };
    let second = run_job(&mut client, poor).await;
    assert!(second.promotion.starts_with("kept production at v1: r2 "), "{}", second.promotion);
    let mut registry_client = registry(&registry_addr).await.expect("registry");
    let alias = registry_client
        .get_alias(pb::GetAliasRequest { model: "promoted".into(), alias: "production".into() })
        .await
        .expect("alias")
        .into_inner();
    assert_eq!(alias.version, 1);
    let bad_rule = tpb::JobSpec {
        promote_if: Some(tpb::PromoteRule { alias: "12".into(), metric: "r2".into(), lower_is_better: false }),
        ..spec("promoted", "linear", "big", "price", &[])
    };
    assert_eq!(refused(&client, bad_rule).await.code(), Code::InvalidArgument);

    let audit = registry_client
        .list_audit(pb::ListAuditRequest { model: "promoted".into(), since_unix_ms: 0, until_unix_ms: 0, limit: 0 })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let actions: Vec<(&str, &str, &str)> =
        audit.iter().map(|e| (e.action.as_str(), e.subject.as_str(), e.after.as_str())).collect();
    assert_eq!(
        actions.iter().map(|(a, s, _)| (*a, *s)).collect::<Vec<_>>(),
        [("create_model", ""), ("upload_version", "1"), ("set_alias", "production"), ("upload_version", "2")],
        "{audit:?}"
    );
    let promotion = &audit[2];
    assert_eq!(
        (promotion.actor.as_str(), promotion.before.as_str(), promotion.after.as_str()),
        (format!("trainer/{survivor}").as_str(), "", "1")
    );
    assert!(promotion.reason.starts_with("promote_if: r2 "), "{}", promotion.reason);
    assert!(audit.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms), "oldest first");
}
