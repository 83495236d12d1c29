//! Who is on the other end of a Runtime API connection.
//!
//! A worker's Runtime API listens on loopback, where every process on the
//! host can reach it: without a check, one function could poll another's
//! `/next` and take its events, or post answers to its calls. So a
//! connection is served only if the socket at its far end is held by the
//! worker's own process or one of its descendants (a shell `bootstrap`
//! that runs `curl` per call is one). Linux only, like the rest of the
//! process runtime: the kernel's socket table gives the far end's inode,
//! and `/proc/PID/fd` tells which processes hold it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Whether the TCP connection from `peer` to `local` (our listener's
/// address) is held by process `root` or one of its descendants.
pub(crate) fn held_by_tree(peer: SocketAddr, local: SocketAddr, root: u32) -> bool {
    let Some(inode) = socket_inode(Path::new("/proc/net"), peer, local) else {
        return false;
    };
    let proc = Path::new("/proc");
    let wanted = format!("socket:[{inode}]");
    tree(proc, root)
        .into_iter()
        .any(|pid| holds(proc, pid, &wanted))
}

/// The inode of the socket whose own address is `peer` and whose far end
/// is `local`, from the kernel's socket tables under `net` (`/proc/net`).
fn socket_inode(net: &Path, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    // A dual-stack client shows up in tcp6 with v4-mapped addresses.
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(net.join(table)).ok()?;
        text.lines()
            .skip(1)
            .find_map(|line| inode_on_line(line, peer, local))
    })
}

/// One line of `/proc/net/tcp{,6}`:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn inode_on_line(line: &str, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (own, far, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
    if parse_endpoint(own)? != peer || parse_endpoint(far)? != local {
        return None;
    }
    inode.parse().ok().filter(|&i| i != 0)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the kernel
/// prints each 32-bit word of the address as a native-endian integer.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        addr.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    let ip = match addr.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `root` and its descendants, from each thread's `children` list under
/// `proc` (`/proc`); without those lists (a kernel built without them),
/// from every process's parent.
fn tree(proc: &Path, root: u32) -> Vec<u32> {
    if let Some(tree) = walk(root, |pid| children(proc, pid)) {
        return tree;
    }
    // The slow way: every process's parent, then a walk down from root.
    let parents: Vec<(u32, u32)> = std::fs::read_dir(proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent(proc, pid)?)))
        .collect();
    let kids = |pid| {
        Some(
            parents
                .iter()
                .filter(|(_, p)| *p == pid)
                .map(|(k, _)| *k)
                .collect(),
        )
    };
    walk(root, kids).unwrap_or_else(|| vec![root])
}

/// `root` and everything below it, breadth first, by `kids`; None as soon
/// as `kids` cannot tell.
fn walk(root: u32, mut kids: impl FnMut(u32) -> Option<Vec<u32>>) -> Option<Vec<u32>> {
    let mut seen = HashSet::from([root]);
    let mut order = vec![root];
    let mut i = 0;
    while let Some(&pid) = order.get(i) {
        i += 1;
        for kid in kids(pid)? {
            if seen.insert(kid) {
                order.push(kid);
            }
        }
    }
    Some(order)
}

/// The children of every thread of `pid`; None if the kernel keeps no lists.
fn children(proc: &Path, pid: u32) -> Option<Vec<u32>> {
    let tasks = match std::fs::read_dir(proc.join(pid.to_string()).join("task")) {
        Ok(t) => t,
        // Gone already: no children to look at, but the lists exist.
        Err(_) => return Some(Vec::new()),
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        kids.extend(
            text.split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok()),
        );
    }
    Some(kids)
}

/// The parent of `pid`, from `/proc/PID/stat` (after the parenthesised
/// command name, which may hold spaces and parentheses itself).
fn parent(proc: &Path, pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether one of `pid`'s descriptors is the socket `wanted` (`socket:[N]`).
fn holds(proc: &Path, pid: u32, wanted: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::process::{Command, Stdio};

    #[test]
    fn endpoints_parse_as_the_kernel_prints_them() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let word = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(parse_endpoint(&format!("{word:08X}:1F90")), Some(v4));
        let mapped = format!(
            "{:08X}{:08X}{:08X}{word:08X}:1F90",
            0,
            0,
            u32::from_ne_bytes([0, 0, 0xff, 0xff])
        );
        assert_eq!(parse_endpoint(&mapped), Some(v4));
        assert_eq!(parse_endpoint("nonsense"), None);
        assert_eq!(parse_endpoint("0100007F:XYZ"), None);
        assert_eq!(parse_endpoint("01007F:1F90"), None);
    }

    #[test]
    fn a_parent_is_read_past_an_awkward_command_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(
            dir.path().join("42/stat"),
            "42 (a) b (c) S 7 42 42 0 -1 4194560",
        )
        .unwrap();
        assert_eq!(parent(dir.path(), 42), Some(7));
        assert_eq!(parent(dir.path(), 43), None);
    }

    #[test]
    fn without_children_lists_the_tree_comes_from_the_parents() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (13, 1)] {
            std::fs::create_dir_all(dir.path().join(format!("{pid}/task/{pid}"))).unwrap();
            std::fs::write(
                dir.path().join(format!("{pid}/stat")),
                format!("{pid} (x) S {ppid} 0"),
            )
            .unwrap();
        }
        let mut found = tree(dir.path(), 10);
        found.sort();
        assert_eq!(found, vec![10, 11, 12]);
    }

    /// A connection held by this test process belongs to its tree; the same
    /// connection does not belong to an unrelated process's; one opened
    /// by a child of ours belongs to ours.
    #[test]
    fn connections_are_traced_to_the_processes_that_hold_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();

        let ours = TcpStream::connect(local).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert!(held_by_tree(peer, local, std::process::id()));

        let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(!held_by_tree(peer, local, stranger.id()));
        stranger.kill().unwrap();
        stranger.wait().unwrap();
        drop(ours);

        // A child connects, says so, and waits until it is killed.
        let script = format!(
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',{}))\nprint('up',flush=True)\nsys.stdin.read()",
            local.port()
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut up = [0u8; 3];
        child.stdout.take().unwrap().read_exact(&mut up).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert!(held_by_tree(peer, local, std::process::id()));
        assert!(held_by_tree(peer, local, child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
