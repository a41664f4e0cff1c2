//! Processes under test: etcd and the modelplane binary per role.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A command that starts from a clean environment: only PATH and HOME of the caller's
/// (and RAYON_NUM_THREADS, the knob for trying the suite with one compute thread),
/// loopback exempt from any proxy, the harness's admin key, and what the test sets. Whatever else the developer's
/// shell exports (`MODELPLANE_*`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `HTTP_PROXY`,
/// `RUST_LOG`…) must not change what a test sees.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in ["PATH", "HOME", "RAYON_NUM_THREADS"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    for name in ["NO_PROXY", "no_proxy"] {
        command.env(name, "127.0.0.1,localhost,::1");
    }
    // CLI commands call as the harness's admin (`crate::keys`).
    command.env("MODELPLANE_API_KEY", crate::keys::admin_key());
    command
}

/// Sends `signal` to a child process.
pub(crate) fn signal(child: &Child, signal: Signal) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    kill(Pid::from_raw(pid), signal).with_context(|| format!("cannot send {signal} to process {pid}"))
}

/// Runs `command` to its end (stdin closed) and returns its output; kills it and fails
/// after `timeout`, which only bounds a hang.
pub fn output_within(command: &mut Command, timeout: Duration) -> Result<Output> {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let Some(status) = wait_exit(&mut child, timeout)? else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{command:?} did not finish within {timeout:?}");
    };
    Ok(Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
}

/// Polls `child` until it exits or `timeout` passes.
fn wait_exit(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago (only for etcd, which cannot report its own).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} after {timeout:?}")
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A real etcd in a temporary directory.
pub struct Etcd {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    /// Serves client TLS with these certificates and requires client certificates.
    tls: Option<crate::pki::Pki>,
}

impl Etcd {
    /// Starts etcd (the Debian `etcd-server` package) on reserved loopback ports.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// [`Self::start`] serving clients over TLS with `pki`'s node certificate, and
    /// requiring client certificates signed by its CA.
    pub fn start_tls(pki: &crate::pki::Pki) -> Result<Self> {
        Self::start_with(Some(pki.clone()))
    }

    fn start_with(tls: Option<crate::pki::Pki>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut etcd =
            Self { child: None, url: String::new(), client_port: free_port()?, peer_port: free_port()?, dir, tls };
        etcd.url = format!("{scheme}://127.0.0.1:{}", etcd.client_port);
        etcd.resume()?;
        Ok(etcd)
    }

    /// Turns on etcd's authentication with a `root` user and `user`, who may read and
    /// write `/modelplane/` and nothing else (over TLS when etcd serves it).
    pub async fn enable_auth(&self, user: &str, password: &str) -> Result<()> {
        use etcd_client::{ConnectOptions, Permission};
        let mut options = ConnectOptions::new();
        if let Some(pki) = &self.tls {
            let tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&pki.ca)?))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(&pki.node.cert)?,
                    std::fs::read(&pki.node.key)?,
                ));
            options = options.with_tls(tls);
        }
        let mut client = etcd_client::Client::connect([self.url.as_str()], Some(options)).await?;
        client.role_add("root").await?;
        client.user_add("root", format!("{password}-root"), None).await?;
        client.user_grant_role("root", "root").await?;
        client.role_add("modelplane").await?;
        client.role_grant_permission("modelplane", Permission::read_write("/modelplane/").with_prefix()).await?;
        client.user_add(user, password, None).await?;
        client.user_grant_role(user, "modelplane").await?;
        client.auth_enable().await?;
        Ok(())
    }

    /// Stops etcd (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: etcd stops answering but keeps its connections, as a stalled disk, a
    /// long pause or a hung host look to its clients.
    pub fn freeze(&self) -> Result<()> {
        let child = self.child.as_ref().context("etcd is not running")?;
        signal(child, Signal::SIGSTOP)
    }

    /// SIGCONT after [`Self::freeze`]: etcd carries on, and expires the leases nobody
    /// could refresh meanwhile.
    pub fn thaw(&self) -> Result<()> {
        let child = self.child.as_ref().context("etcd is not running")?;
        signal(child, Signal::SIGCONT)
    }

    /// Starts etcd again on the same ports and data.
    pub fn resume(&mut self) -> Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let mut command = clean_command("etcd");
        if let Some(pki) = &self.tls {
            command.arg("--cert-file").arg(&pki.node.cert).arg("--key-file").arg(&pki.node.key);
            command.arg("--trusted-ca-file").arg(&pki.ca).arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start etcd; install the etcd-server package (the test script does)")?;
        self.child = Some(child);
        wait_for_port(self.client_port, Duration::from_secs(20))
            .with_context(|| format!("etcd did not start:\n{}", tail(&self.dir.path().join("etcd.log"), 20)))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.thaw();
        self.stop();
    }
}

/// A running `modelplane` process and the addresses its roles listen on.
pub struct Process {
    child: Child,
    /// Role → `127.0.0.1:PORT`.
    pub addrs: HashMap<String, String>,
    log: PathBuf,
    name: String,
}

impl Process {
    /// Runs `modelplane ARGS` and waits until each of `roles` printed its address.
    pub fn spawn(bin: &Path, name: &str, args: &[String], roles: &[&str], log_dir: &Path) -> Result<Self> {
        Self::spawn_with_env(bin, name, args, roles, log_dir, &[])
    }

    /// [`Self::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        bin: &Path,
        name: &str,
        args: &[String],
        roles: &[&str],
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let mut child = clean_command(bin)
            .args(args)
            .envs(crate::keys::key_env(name, args, log_dir)?)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    // Nobody listens any more; keep draining so the child never blocks.
                }
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while roles.iter().any(|role| !addrs.contains_key(*role)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("modelplane: ")
                        && let Some((role, addr)) = rest.split_once(" listening on ")
                    {
                        addrs.insert(role.to_owned(), addr.trim().to_owned());
                    }
                }
                Err(_) => bail!("{name} did not report {roles:?} in time; log:\n{}", tail(&log, 30)),
            }
        }
        Ok(Self { child, addrs, log, name: name.to_owned() })
    }

    /// The address of a role.
    pub fn addr(&self, role: &str) -> String {
        self.addrs.get(role).cloned().unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up. Fails unless the process was running and died of
    /// that signal, so a kill -9 test cannot pass without a kill.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} had already exited ({status}) before kill -9", self.name);
        }
        signal(&self.child, Signal::SIGKILL)?;
        let status = self.child.wait()?;
        if status.signal() != Some(Signal::SIGKILL as i32) {
            bail!("{} ended with {status}, not by kill -9", self.name);
        }
        Ok(())
    }

    /// SIGSTOP: the process stops answering but keeps its sockets open, as a hung one does.
    pub fn freeze(&self) -> Result<()> {
        signal(&self.child, Signal::SIGSTOP)
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        signal(&self.child, Signal::SIGTERM)?;
        match wait_exit(&mut self.child, timeout)? {
            Some(status) => Ok(status.success()),
            None => bail!("{} did not exit within {timeout:?} of SIGTERM", self.name),
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_tail(40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
