//! How much memory a worker offers for loaded versions: a size the operator gives, no
//! limit, or (the default) a share of what the machine or container has.

use std::str::FromStr;

/// The share of the machine's (or container's) memory `auto` offers to models; the rest
/// is for the runtime, request buffers and batches in flight.
pub const AUTO_SHARE_PERCENT: u64 = 80;

/// `--memory-capacity`: `auto`, `unlimited`, or a size (`4GiB`, `512 MiB`, `1000000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryCapacity {
    /// 80 % (`AUTO_SHARE_PERCENT`) of the container's memory limit, else of the machine's
    /// memory; no limit when neither can be read.
    Auto,
    /// Load whatever is deployed.
    Unlimited,
    /// At most this many bytes.
    Bytes(u64),
}

impl FromStr for MemoryCapacity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "unlimited" => Ok(Self::Unlimited),
            size => size.parse::<bytesize::ByteSize>().map(|size| Self::Bytes(size.as_u64())).map_err(|err| {
                format!("memory capacity {text:?} is not a size ({err}); expected e.g. 4GiB, 512MiB, auto or unlimited")
            }),
        }
    }
}

impl MemoryCapacity {
    /// The limit in bytes, `None` for no limit; `auto` reads the machine.
    pub fn resolve(self) -> Option<u64> {
        match self {
            Self::Bytes(bytes) => Some(bytes),
            Self::Unlimited => None,
            Self::Auto => available_memory().map(|bytes| bytes / 100 * AUTO_SHARE_PERCENT),
        }
    }
}

/// The smaller of the cgroup's memory limit and the machine's memory.
fn available_memory() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_total(&text));
    let container = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .ok()
        .and_then(|text| cgroup_limit(&text));
    match (machine, container) {
        (Some(machine), Some(container)) => Some(machine.min(container)),
        (machine, container) => machine.or(container),
    }
}

/// `MemTotal:  24576000 kB` from /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit: `max` (v2) or a huge number (v1) mean none.
fn cgroup_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 60).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_keywords_parse() {
        assert_eq!("auto".parse(), Ok(MemoryCapacity::Auto));
        assert_eq!("unlimited".parse(), Ok(MemoryCapacity::Unlimited));
        assert_eq!("4GiB".parse(), Ok(MemoryCapacity::Bytes(4 << 30)));
        assert_eq!("512 MiB".parse(), Ok(MemoryCapacity::Bytes(512 << 20)));
        assert_eq!("1000".parse(), Ok(MemoryCapacity::Bytes(1000)));
        let err = "lots".parse::<MemoryCapacity>().expect_err("not a size");
        assert!(
            err.starts_with("memory capacity \"lots\" is not a size") && err.ends_with("auto or unlimited"),
            "{err}"
        );
    }

    #[test]
    fn machine_and_container_limits_are_read() {
        assert_eq!(mem_total("MemFree: 1 kB\nMemTotal:       24576000 kB\n"), Some(24_576_000 * 1024));
        assert_eq!(mem_total("nothing"), None);
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None, "cgroup v1 without a limit");
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(MemoryCapacity::Bytes(7).resolve(), Some(7));
        assert_eq!(MemoryCapacity::Unlimited.resolve(), None);
        // This machine has a /proc/meminfo, so `auto` finds a limit below its memory.
        let auto = MemoryCapacity::Auto.resolve().expect("a limit on Linux");
        assert!(auto > 0 && auto < available_memory().expect("read"), "{auto}");
    }
}
