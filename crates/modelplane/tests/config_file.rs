//! Settings files: values become flag defaults; bad files and bad values stop the
//! process with one clear line before any port is bound.

use std::path::Path;
use std::time::Duration;

use modelplane_tests::{Process, clean_command, output_within};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_modelplane"))
}

/// Runs `modelplane ARGS`, expecting failure; returns stderr and stdout.
fn fails(args: &[&str]) -> (String, String) {
    let output = output_within(clean_command(bin()).args(args), Duration::from_secs(300)).expect("runs");
    assert!(!output.status.success(), "{args:?} should fail");
    (String::from_utf8_lossy(&output.stderr).into_owned(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn config_files_set_defaults_and_bad_ones_fail_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path.display().to_string()
    };

    let typo = write("typo.toml", "listn = \"127.0.0.1:0\"\n");
    let (stderr, _) = fails(&["registry", "--config", &typo]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unknown setting \"listn\" for `modelplane registry`") && stderr.contains("listen"),
        "{stderr}"
    );

    let broken = write("broken.toml", "listen = \n");
    let (stderr, _) = fails(&["registry", "--config", &broken]);
    assert!(stderr.contains("is not valid TOML"), "{stderr}");

    // A bad value is refused before any port is bound.
    let zero = write("zero.toml", &format!("store = {:?}\nmax-concurrent-jobs = 0\n", dir.path().join("s.redb")));
    let (stderr, stdout) = fails(&["trainer", "--config", &zero, "--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("max concurrent jobs is 0"), "{stderr}");
    assert!(!stdout.contains("listening on"), "bound a port before validating: {stdout}");

    // A good file starts the role; a flag still overrides the file.
    let good = write(
        "registry.toml",
        &format!(
            "store = {:?}\nlisten = \"127.0.0.1:1\"\nblob-store = {:?}\norphan-grace-secs = 60\n",
            dir.path().join("store.redb"),
            dir.path().join("blobs")
        ),
    );
    let args: Vec<String> =
        ["registry", "--config", good.as_str(), "--listen", "127.0.0.1:0"].iter().map(|s| (*s).to_owned()).collect();
    let registry = Process::spawn(bin(), "registry", &args, &["registry"], dir.path()).expect("registry starts");
    assert_ne!(registry.addr("registry"), "127.0.0.1:1", "the flag overrides the file");
    assert!(modelplane_tests::health_serving(&registry.addr("registry")).await.expect("health"));
    assert!(dir.path().join("blobs").is_dir(), "blob-store from the file was used");
}
