/// Told how a transfer advances; called from the task doing the transfer, so it should
/// be quick (draw a bar, print a line).
pub trait Progress: Send + Sync {
    /// The transfer starts; `total` is its size in bytes when known.
    fn started(&self, total: Option<u64>) {
        let _ = total;
    }
    /// `done` bytes of the transfer have gone through.
    fn advanced(&self, done: u64) {
        let _ = done;
    }
    /// A broken download resumes from `done` bytes (attempt `attempt`, counting from 2).
    fn resumed(&self, done: u64, attempt: u32) {
        let _ = (done, attempt);
    }
    /// The transfer ended (successfully or not).
    fn finished(&self, done: u64) {
        let _ = done;
    }
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
