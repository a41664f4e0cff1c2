//! Progress of uploads and downloads: a bar with bytes/s and ETA for people (drawn only
//! on a terminal), or one JSON object per line at most twice a second for scripts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use modelplane_client::Progress;

use super::OutputFormat;

const JSON_EVERY: Duration = Duration::from_millis(500);

/// Shows one transfer's progress as `output` asks.
pub(crate) struct TransferProgress {
    action: &'static str,
    output: OutputFormat,
    bar: ProgressBar,
    started: Instant,
    total: Mutex<Option<u64>>,
    last_json: Mutex<Option<Instant>>,
}

impl TransferProgress {
    pub fn new(action: &'static str, output: OutputFormat) -> Self {
        let bar = match output {
            OutputFormat::Text => ProgressBar::new(0),
            OutputFormat::Json => ProgressBar::hidden(),
        };
        let style =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_message(action);
        Self { action, output, bar, started: Instant::now(), total: Mutex::new(None), last_json: Mutex::new(None) }
    }

    fn json(&self, event: &str, done: u64, attempt: Option<u32>) {
        let seconds = self.started.elapsed().as_secs_f64();
        let total = self.total.lock().ok().and_then(|total| *total);
        let mut line = serde_json::json!({
            "event": event,
            "action": self.action,
            "bytes": done,
            "total_bytes": total,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "bytes_per_second": if seconds > 0.0 { (done as f64 / seconds).round() } else { 0.0 },
        });
        if let Some(attempt) = attempt {
            line["attempt"] = attempt.into();
        }
        println!("{line}");
    }
}

impl Progress for TransferProgress {
    fn started(&self, total: Option<u64>) {
        if let Ok(mut known) = self.total.lock() {
            *known = total;
        }
        if let Some(total) = total {
            self.bar.set_length(total);
        }
        if self.output == OutputFormat::Json {
            self.json("started", 0, None);
        }
    }

    fn advanced(&self, done: u64) {
        self.bar.set_position(done);
        if self.output != OutputFormat::Json {
            return;
        }
        let due = self.last_json.lock().map(|mut last| {
            let due = last.is_none_or(|at| at.elapsed() >= JSON_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if due.unwrap_or(false) {
            self.json("progress", done, None);
        }
    }

    fn resumed(&self, done: u64, attempt: u32) {
        self.bar.println(format!("{}: the stream broke; resuming at {done} bytes (attempt {attempt})", self.action));
        if self.output == OutputFormat::Json {
            self.json("resumed", done, Some(attempt));
        }
    }

    fn finished(&self, done: u64) {
        self.bar.finish_and_clear();
        if self.output == OutputFormat::Json {
            self.json("finished", done, None);
        }
    }
}
