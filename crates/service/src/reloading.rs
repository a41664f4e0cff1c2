//! A value built from files and built again when they change — the served certificate,
//! a client's certificate, the CAs that verify peers — so what cert-manager renews in
//! place takes effect without a restart. The files' modification times are looked at
//! no more than once a second, on use (a handshake); files that do not load leave the
//! last good value in use, and the failure is logged once per change.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How often, at most, the files' modification times are looked at.
pub(crate) const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

type Build<T> = Box<dyn Fn(&[PathBuf]) -> Result<T, String> + Send + Sync>;

pub(crate) struct Reloading<T> {
    files: Vec<PathBuf>,
    /// What the value is, for the log ("TLS certificate", "client CA", …).
    what: &'static str,
    build: Build<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    value: T,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").field("what", &self.what).field("files", &self.files).finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl<T: Clone> Reloading<T> {
    /// Builds the value from `files` now; the error is `build`'s (it names the file).
    pub(crate) fn load(
        files: Vec<PathBuf>,
        what: &'static str,
        build: impl Fn(&[PathBuf]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let stamps = files.iter().map(|file| modified(file)).collect();
        let value = build(&files)?;
        let state = Mutex::new(State { value, stamps, checked: Instant::now() });
        Ok(Self { files, what, build: Box::new(build), state })
    }

    /// The value, built again first if the files changed since it was.
    pub(crate) fn current(&self) -> T {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let stamps: Vec<Option<SystemTime>> = self.files.iter().map(|file| modified(file)).collect();
            if stamps != state.stamps {
                // Remembered either way: half-written files are tried again when they change.
                state.stamps = stamps;
                match (self.build)(&self.files) {
                    Ok(value) => {
                        tracing::info!(what = self.what, file = %self.files[0].display(), "reloaded");
                        state.value = value;
                    }
                    Err(err) => {
                        tracing::warn!(what = self.what, error = %err, "not reloaded; keeping the previous one")
                    }
                }
            }
        }
        state.value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_files_are_read_after_the_interval_and_bad_ones_keep_the_last_good_value() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("n");
        std::fs::write(&file, "1").expect("write");
        let parse = |files: &[PathBuf]| {
            let text = std::fs::read_to_string(&files[0]).map_err(|err| err.to_string())?;
            text.trim().parse::<u32>().map_err(|err| format!("{}: {err}", files[0].display()))
        };
        let number = Reloading::load(vec![file.clone()], "number", parse).expect("loads");
        assert_eq!(number.current(), 1);
        std::thread::sleep(Duration::from_millis(20)); // a later modification time
        std::fs::write(&file, "2").expect("write");
        assert_eq!(number.current(), 1, "not before the check interval");
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(number.current(), 2, "the changed file is read");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "two").expect("write");
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_eq!(number.current(), 2, "a file that does not load leaves the last good value");
        assert!(Reloading::load(vec![dir.path().join("none")], "number", parse).is_err());
    }
}
