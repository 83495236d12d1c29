//! Memory limits and clean kills for worker processes.
//!
//! Each worker gets its own cgroup when the host lets wisp make one
//! (v2 with the memory controller delegated, else v1's memory hierarchy):
//! the kernel then holds the worker to `memory_mb`, tells us when it
//! OOM-killed it, and kills every process in it at once. Without cgroups
//! the fallback is `RLIMIT_DATA`, which counts what a process really
//! allocates (unlike `RLIMIT_AS`, which V8's address-space reservations
//! trip over at start).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::users::WorkerUser;

/// How this host lets wisp limit memory.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// cgroup v2: workers live under `dir` (ours, with `+memory` delegated).
    CgroupV2 { dir: PathBuf },
    /// cgroup v1 memory hierarchy: workers live under `dir`.
    CgroupV1 { dir: PathBuf },
    /// Per-process `RLIMIT_DATA`.
    Rlimit,
}

impl Sandbox {
    /// Finds the strongest mechanism available; `tag` names wisp's own
    /// cgroup (one per server process).
    pub fn detect(tag: &str) -> Sandbox {
        if let Some(dir) = cgroup_v2(tag) {
            return Sandbox::CgroupV2 { dir };
        }
        if let Some(dir) = cgroup_v1(tag) {
            return Sandbox::CgroupV1 { dir };
        }
        Sandbox::Rlimit
    }

    pub fn describe(&self) -> String {
        match self {
            Sandbox::CgroupV2 { dir } => format!("cgroup v2 at {}", dir.display()),
            Sandbox::CgroupV1 { dir } => format!("cgroup v1 at {}", dir.display()),
            Sandbox::Rlimit => "RLIMIT_DATA (no writable cgroup)".into(),
        }
    }

    /// Makes the limits of one worker.
    pub(crate) fn worker(&self, id: u64, memory_mb: u32) -> std::io::Result<WorkerLimits> {
        let bytes = u64::from(memory_mb) * 1024 * 1024;
        match self {
            Sandbox::CgroupV2 { dir } => {
                let dir = dir.join(format!("w{id}"));
                std::fs::create_dir(&dir)?;
                std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                // Swap would let a worker run past its limit slowly instead of failing.
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                Ok(WorkerLimits::cgroup(dir, CgroupVersion::V2))
            }
            Sandbox::CgroupV1 { dir } => {
                let dir = dir.join(format!("w{id}"));
                std::fs::create_dir(&dir)?;
                std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                let _ = std::fs::write(dir.join("memory.swappiness"), "0");
                Ok(WorkerLimits::cgroup(dir, CgroupVersion::V1))
            }
            Sandbox::Rlimit => Ok(WorkerLimits {
                cgroup: None,
                rlimit_data: Some(bytes),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The own cgroup path of this process in a hierarchy (`0::/a/b` for v2,
/// `N:memory:/a/b` for v1), from /proc/self/cgroup.
fn own_cgroup(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        matches.then(|| path.trim_start_matches('/').to_string())
    })
}

/// Creates `base/tag` and checks that a child can be made in it. Groups
/// that servers no longer running left behind (`wisp-<pid>`) go.
fn make_group(base: &Path, tag: &str) -> Option<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let owner_gone = name
                .strip_prefix("wisp-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if owner_gone && name != tag {
                remove_group(&e.path());
            }
        }
    }
    let dir = base.join(tag);
    if !dir.exists() {
        std::fs::create_dir(&dir).ok()?;
    }
    let probe = dir.join("probe");
    let _ = std::fs::remove_dir(&probe);
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

fn cgroup_v2(tag: &str) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let own = root.join(own_cgroup(None)?);
    let controllers = std::fs::read_to_string(own.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return None;
    }
    // Our group must hand the memory controller down to wisp's group and
    // wisp's group to each worker's.
    std::fs::write(own.join("cgroup.subtree_control"), "+memory").ok()?;
    let dir = make_group(&own, tag)?;
    std::fs::write(dir.join("cgroup.subtree_control"), "+memory").ok()?;
    Some(dir)
}

fn cgroup_v1(tag: &str) -> Option<PathBuf> {
    let mount = Path::new("/sys/fs/cgroup/memory");
    if !mount.join("memory.limit_in_bytes").exists() {
        return None;
    }
    // Inside a container the mount's root is often our own group already.
    let own = own_cgroup(Some("memory"))
        .map(|p| mount.join(p))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| mount.to_path_buf());
    make_group(&own, tag)
}

/// Removes a group's empty worker groups, then the group (if empty).
fn remove_group(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The limits of one worker.
#[derive(Debug)]
pub(crate) struct WorkerLimits {
    cgroup: Option<(PathBuf, CgroupVersion)>,
    rlimit_data: Option<u64>,
}

impl WorkerLimits {
    fn cgroup(dir: PathBuf, version: CgroupVersion) -> WorkerLimits {
        WorkerLimits {
            cgroup: Some((dir, version)),
            rlimit_data: None,
        }
    }

    /// Sets up `command` to start in its own process group, inside this
    /// worker's cgroup (or under its rlimit), as `user` when one is given,
    /// before it runs any code.
    pub(crate) fn apply(
        &self,
        command: &mut std::process::Command,
        user: Option<WorkerUser>,
    ) -> std::io::Result<()> {
        command.process_group(0);
        let procs = match &self.cgroup {
            Some((dir, _)) => Some(
                CString::new(
                    dir.join("cgroup.procs")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
                .map_err(|_| std::io::Error::other("cgroup path has a NUL byte"))?,
            ),
            None => None,
        };
        let rlimit = self.rlimit_data;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, open, write, close,
        // setrlimit, setgroups, setgid, setuid) on data prepared before the
        // fork.
        unsafe {
            command.pre_exec(move || {
                // A worker never outlives the server, even one killed with -9.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(path) = &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0" moves the writing process itself.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(bytes) = rlimit {
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Last, once the cgroup (writable by root only) is joined:
                // no groups, then the gid, then the uid, which gives up root.
                if let Some(user) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(user.gid) != 0
                        || libc::setuid(user.uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // A change of user clears the parent-death signal.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Kills every process of the worker: the cgroup's members when there
    /// is one (which catches children that left the process group), and
    /// the process group.
    pub(crate) fn kill_all(&self, pgid: i32) {
        // SAFETY: plain syscall; a stale pgid at worst fails with ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
        if let Some((dir, version)) = &self.cgroup {
            if *version == CgroupVersion::V2 && std::fs::write(dir.join("cgroup.kill"), "1").is_ok()
            {
                return;
            }
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: plain syscall on a pid read from our own cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }

    /// Opens what tells the worker's peak memory, once: every invocation
    /// then costs one read of it, not an open, a read and a close.
    pub(crate) fn memory_gauge(&self, pid: u32) -> MemoryGauge {
        let open = |p: PathBuf| std::fs::File::open(p).ok();
        let (file, status) = match &self.cgroup {
            Some((dir, CgroupVersion::V2)) => (
                open(dir.join("memory.peak")).or_else(|| open(dir.join("memory.current"))),
                false,
            ),
            Some((dir, CgroupVersion::V1)) => (open(dir.join("memory.max_usage_in_bytes")), false),
            None => (open(PathBuf::from(format!("/proc/{pid}/status"))), true),
        };
        MemoryGauge { file, status }
    }

    /// Whether the kernel killed a process of this worker for memory.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((dir, version)) = &self.cgroup else {
            return false;
        };
        let file = match version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .is_some_and(|n| n > 0)
    }

    pub(crate) fn limited_by_rlimit(&self) -> bool {
        self.rlimit_data.is_some()
    }
}

impl WorkerLimits {
    /// Removes the worker's cgroup once its processes are gone. Blocking
    /// (it retries while the kernel reaps them): call off the async runtime.
    pub(crate) fn remove(self) {
        if let Some((dir, _)) = &self.cgroup {
            for _ in 0..40 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            tracing::warn!(dir = %dir.display(), "could not remove a worker's cgroup");
        }
    }
}

/// A worker's peak memory, read from a file kept open: a cgroup's counter
/// in bytes, or the VmHWM line of the process's status.
pub(crate) struct MemoryGauge {
    file: Option<std::fs::File>,
    status: bool,
}

impl MemoryGauge {
    /// The peak so far in bytes; 0 when unknown.
    pub(crate) fn peak_bytes(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else { return 0 };
        let mut buf = [0u8; 4096];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let value = if self.status {
            vm_hwm(&text)
        } else {
            text.trim().parse().ok()
        };
        value.unwrap_or(0)
    }
}

/// The VmHWM line of a /proc/PID/status text, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let kb = l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim();
        kb.parse::<u64>().ok().map(|k| k * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_reads_our_own_peak_again_and_again() {
        let gauge = MemoryGauge {
            file: std::fs::File::open(format!("/proc/{}/status", std::process::id())).ok(),
            status: true,
        };
        let first = gauge.peak_bytes();
        assert!(first > 0);
        let grown = vec![1u8; 64 << 20];
        assert!(gauge.peak_bytes() >= first + (60 << 20), "{}", grown.len());
    }
}
