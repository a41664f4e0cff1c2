//! A TCP proxy that can be cut: the connections it carries, and those made while it is
//! cut, stay open but carry nothing — a network partition as the processes on either
//! side see it (no reset, no refusal, only silence) — until it heals.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:PORT` to a target address while not cut.
pub struct PartitionProxy {
    /// `127.0.0.1:PORT`, the address to give the processes behind the partition.
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(watch::channel(false).0);
        let task = tokio::spawn(accept(listener, target, cut.clone()));
        Ok(Self { addr, cut, task })
    }

    /// Stops carrying bytes, both ways, on every connection.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Carries bytes again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, cut: Arc<watch::Sender<bool>>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let cut = cut.subscribe();
        tokio::spawn(async move {
            // A connection made during the partition reaches nothing until it heals.
            let mut waiting = cut.clone();
            if waiting.wait_for(|cut| !cut).await.is_err() {
                return;
            }
            let Ok(outbound) = TcpStream::connect(target).await else { return };
            let (inbound_read, inbound_write) = inbound.into_split();
            let (outbound_read, outbound_write) = outbound.into_split();
            tokio::select! {
                _ = pipe(inbound_read, outbound_write, cut.clone()) => {}
                _ = pipe(outbound_read, inbound_write, cut) => {}
            }
        });
    }
}

/// Copies `from` to `to`, holding each read back while the proxy is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if cut.wait_for(|cut| !cut).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Cut mid-read: stop reading, so the sender's bytes pile up unread.
            _ = cut.wait_for(|cut| *cut) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a cut are held until it heals.
        if cut.wait_for(|cut| !cut).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
