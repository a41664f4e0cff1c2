//! A real etcd cluster of several members on loopback, as the production overlay runs
//! it, whose members a test can kill or freeze one at a time.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use crate::cluster::{clean_command, free_port, signal, tail, wait_for_port};

/// One member: its process and ports.
struct Member {
    name: String,
    child: Option<Child>,
    client_port: u16,
}

/// etcd members in temporary directories, one cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    /// `http://127.0.0.1:P1,http://127.0.0.1:P2,…`: every member, as `--etcd` takes them.
    pub urls: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members that form one cluster, and waits until each listens.
    pub fn start(size: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..size).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_>>()?;
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client_port, peer_port)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
            let child = clean_command("etcd")
                .args(["--name", &name, "--data-dir"])
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "modelplane-test"])
                .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start etcd; install the etcd-server package (the test script does)")?;
            members.push(Member { name, child: Some(child), client_port: *client_port });
        }
        let urls: Vec<String> = members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect();
        let cluster = Self { members, urls: urls.join(","), dir };
        for member in &cluster.members {
            wait_for_port(member.client_port, Duration::from_secs(30)).with_context(|| {
                format!("etcd {} did not start:\n{}", member.name, tail(&cluster.log(&member.name), 20))
            })?;
        }
        Ok(cluster)
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn child(&self, member: usize) -> Result<&Child> {
        self.members.get(member).and_then(|m| m.child.as_ref()).context("no such running member")
    }

    /// SIGKILL of one member: it is gone, its connections reset.
    pub fn kill(&mut self, member: usize) -> Result<()> {
        let mut child = self.members.get_mut(member).and_then(|m| m.child.take()).context("no such running member")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGSTOP of one member: it stops answering but keeps its connections.
    pub fn freeze(&self, member: usize) -> Result<()> {
        signal(self.child(member)?, Signal::SIGSTOP)
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&self, member: usize) -> Result<()> {
        signal(self.child(member)?, Signal::SIGCONT)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = signal(&child, Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
