//! Unprivileged users for workers.
//!
//! A server started as root with `--worker-uid-base BASE` runs each
//! function's processes as a uid of its own (BASE, BASE+1, ... in the order
//! functions are first prepared; the gid is the same number, with no
//! supplementary groups). A function then cannot read the server's data
//! dir or credentials, and cannot signal, trace or read the environment of
//! the server or of another function's workers. Without it, workers run as
//! the server's own user, as Lambda's local emulators do.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// The user a worker runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerUser {
    pub uid: u32,
    pub gid: u32,
}

/// Most functions one server gives a uid of their own.
const MAX_USERS: u32 = 1 << 20;

/// Hands out one uid per function from a base.
#[derive(Debug)]
pub struct WorkerUsers {
    base: u32,
    /// How many uids from `base` may be handed out.
    limit: u32,
    assigned: Mutex<HashMap<String, u32>>,
}

impl WorkerUsers {
    /// Workers can change user only when the server runs as root; the
    /// range must fit below the invalid uid `u32::MAX`.
    pub fn new(base: u32) -> Result<WorkerUsers, String> {
        if !is_root() {
            return Err(
                "--worker-uid-base needs the server to run as root: only root can start processes as other users"
                    .into(),
            );
        }
        if base == 0
            || base
                .checked_add(MAX_USERS)
                .is_none_or(|top| top == u32::MAX)
        {
            return Err(format!(
                "--worker-uid-base {base} is out of range: it must be between 1 and {}",
                u32::MAX - 1 - MAX_USERS
            ));
        }
        // In a user namespace only the mapped ids exist: as many
        // functions get a uid as the extent holding the base has room for.
        let mut limit = MAX_USERS;
        for map in ["uid_map", "gid_map"] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/self/{map}")) else {
                continue;
            };
            let room = mapped_from(&text, base);
            if room == 0 {
                return Err(format!(
                    "--worker-uid-base {base} is not mapped in this user namespace (/proc/self/{map}); pick a base inside a mapped range"
                ));
            }
            limit = limit.min(room);
        }
        Ok(WorkerUsers {
            base,
            limit,
            assigned: Mutex::new(HashMap::new()),
        })
    }

    /// The user of `function`'s workers: the same for all its versions.
    pub fn for_function(&self, function: &str) -> Result<WorkerUser, String> {
        let mut assigned = self
            .assigned
            .lock()
            .map_err(|_| "the worker user table is poisoned".to_string())?;
        let next = assigned.len() as u32;
        let uid = match assigned.get(function) {
            Some(uid) => *uid,
            None if next < self.limit => {
                let uid = self.base + next;
                assigned.insert(function.to_string(), uid);
                uid
            }
            None => {
                return Err(format!(
                "more than {} functions need a worker user of their own from --worker-uid-base {}",
                self.limit, self.base
            ))
            }
        };
        Ok(WorkerUser { uid, gid: uid })
    }
}

/// How many ids from `base` on one extent of a `/proc/self/uid_map`
/// (lines of `inside outside count`) maps; 0 when none holds `base`.
fn mapped_from(map: &str, base: u32) -> u32 {
    let base = u64::from(base);
    map.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
            let (inside, _, len) = (fields.next()??, fields.next()??, fields.next()??);
            (inside <= base && base < inside + len).then(|| inside + len - base)
        })
        .map_or(0, |room| room.min(u64::from(u32::MAX)) as u32)
}

/// Whether this server runs as root.
pub(crate) fn is_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

/// What a worker needs of a path.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Run it (a program: execute, and read for a script).
    Run,
    /// Read it (a script an interpreter loads).
    Read,
    /// Enter it (a working directory).
    Enter,
}

/// Checks, from permission bits, that `user` can reach `path` and use it
/// as `need` says; the error names what stops it. Access control lists
/// are not read: a path they open to the user is reported as blocked.
pub fn check_access(path: &Path, user: WorkerUser, need: Need) -> Result<(), String> {
    let path = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Bits of (owner, group, other) that apply to this user.
    let allowed = |meta: &std::fs::Metadata, bits: u32| {
        let mode = meta.mode();
        let shift = if meta.uid() == user.uid {
            6
        } else if meta.gid() == user.gid {
            3
        } else {
            0
        };
        (mode >> shift) & bits == bits
    };
    for dir in path.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !allowed(&meta, 0o1) {
            return Err(format!(
                "uid {} cannot enter {} (mode {:o}, owner {})",
                user.uid,
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid()
            ));
        }
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (bits, what) = match need {
        Need::Run => (0o5, "read and run"),
        Need::Read => (0o4, "read"),
        Need::Enter => (0o1, "enter"),
    };
    // A binary needs only execute; a script also needs read. Asking for
    // both keeps the check simple and true of the usual 0755.
    if allowed(&meta, bits) {
        Ok(())
    } else {
        Err(format!(
            "uid {} cannot {what} {} (mode {:o}, owner {})",
            user.uid,
            path.display(),
            meta.mode() & 0o7777,
            meta.uid()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_path_is_reachable_only_through_enterable_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("run.js");
        std::fs::write(&script, "x").unwrap();
        // SAFETY: plain syscalls.
        let me = unsafe { libc::geteuid() };
        let stranger = WorkerUser {
            uid: me.wrapping_add(12345),
            gid: unsafe { libc::getegid() }.wrapping_add(12345),
        };
        chmod(tmp.path(), 0o711);
        chmod(&tmp.path().join("a"), 0o711);
        chmod(&dir, 0o755);
        chmod(&script, 0o644);
        check_access(&script, stranger, Need::Read).unwrap();
        check_access(&dir, stranger, Need::Enter).unwrap();
        let no_run = check_access(&script, stranger, Need::Run).unwrap_err();
        assert!(no_run.contains("cannot read and run"), "{no_run}");

        chmod(&tmp.path().join("a"), 0o700);
        let blocked = check_access(&script, stranger, Need::Read).unwrap_err();
        assert!(
            blocked.contains("cannot enter") && blocked.contains("/a "),
            "{blocked}"
        );
        // The owner's bits apply to the owner.
        let owner = WorkerUser {
            uid: me,
            gid: stranger.gid,
        };
        check_access(&script, owner, Need::Read).unwrap();
    }

    #[test]
    fn the_uids_handed_out_are_the_mapped_ones() {
        let host = "         0          0 4294967295\n";
        assert_eq!(mapped_from(host, 2_000_000_000), 2_294_967_295);
        // A rootless container: 0 and then 100000..165535 of the host.
        let rootless = "0 1000 1\n1 100000 65536\n";
        assert_eq!(mapped_from(rootless, 1), 65536);
        assert_eq!(mapped_from(rootless, 60000), 5537);
        assert_eq!(mapped_from(rootless, 2_000_000_000), 0);
        assert_eq!(mapped_from("garbage", 1), 0);
    }

    #[test]
    fn uids_are_one_per_function_and_stay_in_range() {
        // Built directly: `new` insists on root, which a test may not be.
        let users = WorkerUsers {
            base: 5000,
            limit: 2,
            assigned: Mutex::new(HashMap::new()),
        };
        let a = users.for_function("a").unwrap();
        let b = users.for_function("b").unwrap();
        assert_eq!((a.uid, a.gid, b.uid), (5000, 5000, 5001));
        assert_eq!(users.for_function("a").unwrap(), a);
        assert!(users.for_function("c").is_err(), "past the limit");
        if is_root() {
            assert!(WorkerUsers::new(0).is_err());
            assert!(WorkerUsers::new(u32::MAX - 5).is_err());
            assert!(WorkerUsers::new(2_000_000_000).is_ok());
        } else {
            assert!(WorkerUsers::new(2_000_000_000).is_err());
        }
    }
}
