//! Starting the real binary, building guests, signing API requests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use wisp_aws::sigv4;
use wisp_aws::Credentials;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wisp")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds the test guests once per test binary and returns the component path.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = repo_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("guests/Cargo.toml"))
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the test guests failed (is wasm32-wasip2 installed?)"
        );
        root.join("guests/target/wasm32-wasip2/release")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running `wisp serve` that is killed on drop.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub gateway: String,
    pub api: String,
    pub credentials: Credentials,
    pub http: reqwest::blocking::Client,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts `wisp serve` with extra flags (`--keep-warm 1s`, ...).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::spawn(data_dir, data_dir.as_os_str(), extra)
    }

    /// Starts `wisp serve` in `data_dir`'s parent with `--data-dir` relative,
    /// the way a user runs it (`.wisp` by default).
    pub fn start_relative(data_dir: &Path) -> Server {
        let name = data_dir.file_name().expect("a named data dir");
        Self::spawn(data_dir, name, &[])
    }

    fn spawn(data_dir: &Path, data_arg: &std::ffi::OsStr, extra: &[&str]) -> Server {
        let _ = std::fs::remove_file(data_dir.join("endpoints.json"));
        let child = Command::new(bin())
            .current_dir(data_dir.parent().expect("data dir has a parent"))
            .args(["serve", "--http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_arg)
            .env_remove("WISP_ACCESS_KEY_ID")
            .env_remove("WISP_SECRET_ACCESS_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wisp starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoints = loop {
            if let Ok(bytes) = std::fs::read(data_dir.join("endpoints.json")) {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    break v;
                }
            }
            assert!(Instant::now() < deadline, "wisp did not start within 30s");
            std::thread::sleep(Duration::from_millis(20));
        };
        let text =
            std::fs::read_to_string(data_dir.join("credentials")).expect("credentials written");
        let field = |key: &str| {
            text.lines()
                .find_map(|l| {
                    l.split_once('=')
                        .filter(|(k, _)| k.trim() == key)
                        .map(|(_, v)| v.trim().to_string())
                })
                .expect("credentials field")
        };
        Server {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            gateway: endpoints["gateway"].as_str().unwrap().to_string(),
            api: endpoints["api"].as_str().unwrap().to_string(),
            credentials: Credentials {
                access_key_id: field("aws_access_key_id"),
                secret_access_key: field("aws_secret_access_key"),
            },
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Sends SIGKILL to the server, which cannot clean up.
    pub fn kill9(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("WISP_ACCESS_KEY_ID")
            .env_remove("WISP_SECRET_ACCESS_KEY")
            .output()
            .expect("wisp runs")
    }

    /// A SigV4-signed API request.
    pub fn api(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        self.api_as(&self.credentials, method, path_and_query, body, headers)
    }

    pub fn api_as(
        &self,
        credentials: &Credentials,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        self.try_api_as(credentials, method, path_and_query, body, headers)
            .expect("the API answers")
    }

    /// A signed API request that may fail to get an answer (a killed server).
    pub fn try_api(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::blocking::Response> {
        self.try_api_as(&self.credentials, method, path_and_query, body, headers)
    }

    fn try_api_as(
        &self,
        credentials: &Credentials,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::blocking::Response> {
        let url = reqwest::Url::parse(&format!("{}{path_and_query}", self.api)).unwrap();
        let mut map = http::HeaderMap::new();
        map.insert(
            "host",
            format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
                .parse()
                .unwrap(),
        );
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        sigv4::sign(
            credentials,
            method,
            url.path(),
            url.query().unwrap_or(""),
            &mut map,
            body,
            "us-east-1",
            "lambda",
            now,
        );
        map.remove("host");
        self.http
            .request(method.parse().unwrap(), url)
            .headers(map)
            .body(body.to_vec())
            .send()
    }

    /// An operation of an AWS JSON protocol (`X-Amz-Target: target`);
    /// `Err` when no answer came.
    fn try_json_target(
        &self,
        target: &str,
        content_type: &str,
        input: &Value,
    ) -> reqwest::Result<(u16, Value)> {
        let r = self.try_api(
            "POST",
            "/",
            input.to_string().as_bytes(),
            &[("x-amz-target", target), ("content-type", content_type)],
        )?;
        let status = r.status().as_u16();
        Ok((status, r.json().unwrap_or(Value::Null)))
    }

    /// An SQS operation (AWS JSON 1.0); `Err` when no answer came.
    pub fn try_sqs(&self, operation: &str, input: &Value) -> reqwest::Result<(u16, Value)> {
        let target = format!("AmazonSQS.{operation}");
        self.try_json_target(&target, "application/x-amz-json-1.0", input)
    }

    /// An EventBridge operation (AWS JSON 1.1); `Err` when no answer came.
    pub fn try_events(&self, operation: &str, input: &Value) -> reqwest::Result<(u16, Value)> {
        let target = format!("AWSEvents.{operation}");
        self.try_json_target(&target, "application/x-amz-json-1.1", input)
    }

    /// A Step Functions operation (AWS JSON 1.0).
    pub fn states(&self, operation: &str, input: &Value) -> (u16, Value) {
        let target = format!("AWSStepFunctions.{operation}");
        self.try_json_target(&target, "application/x-amz-json-1.0", input)
            .expect("the API answers")
    }

    pub fn events(&self, operation: &str, input: &Value) -> (u16, Value) {
        self.try_events(operation, input).expect("the API answers")
    }

    pub fn sqs(&self, operation: &str, input: &Value) -> (u16, Value) {
        self.try_sqs(operation, input).expect("the API answers")
    }

    pub fn api_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self.api(method, path, body.to_string().as_bytes(), &[]);
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}{path}", self.gateway))
            .send()
            .expect("the gateway answers")
    }

    /// The record of a request, once the recorder has stored it.
    /// Records are written after the response, off the request path: wait for it.
    pub fn record(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, v) = self.api_json(
                "GET",
                &format!("/wisp/v1/invocations/{request_id}"),
                &Value::Null,
            );
            if status == 200 {
                return v;
            }
            assert!(Instant::now() < deadline, "no record for {request_id}: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The invocation's log lines, once its record (written with them) exists.
    pub fn logs(&self, request_id: &str) -> Vec<String> {
        self.record(request_id);
        let (_, v) = self.api_json(
            "GET",
            &format!("/wisp/v1/logs?request_id={request_id}"),
            &Value::Null,
        );
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.api))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a manifest (and copies the testkit component) into a new app dir.
pub fn app_dir(root: &Path, manifest: &str) -> PathBuf {
    let dir = root.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(guest("testkit"), dir.join("testkit.wasm")).unwrap();
    std::fs::write(dir.join("wisp.toml"), manifest).unwrap();
    dir
}

pub fn request_id(r: &reqwest::blocking::Response) -> String {
    r.headers()["x-wisp-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The directory of a Lambda test function under `guests/lambda`.
pub fn lambda_dir(name: &str) -> PathBuf {
    repo_root().join("guests/lambda").join(name)
}

/// Zips a directory the way `wisp deploy` does (modes kept).
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            w.start_file(
                name,
                zip::write::SimpleFileOptions::default().unix_permissions(mode),
            )
            .unwrap();
            w.write_all(&std::fs::read(&p).unwrap()).unwrap();
        }
    }
    w.finish().unwrap();
    out.into_inner()
}

/// A CreateFunction body for a process runtime.
pub fn lambda_body(name: &str, runtime: &str, handler: &str, zip: &[u8]) -> Value {
    use base64::Engine as _;
    serde_json::json!({
        "FunctionName": name,
        "Runtime": runtime,
        "Role": "arn:aws:iam::000000000000:role/test",
        "Handler": handler,
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
        "MemorySize": 128,
        "Timeout": 3,
    })
}

/// Builds the `provided` Rust function (AWS's `lambda_runtime` crate) once
/// and returns its zip, holding the binary as `bootstrap`.
pub fn rust_provided_zip() -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let binary = BUILT.get_or_init(|| {
        let root = repo_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--manifest-path"])
            .arg(root.join("guests/lambda/rust-provided/Cargo.toml"))
            .env("CARGO_TARGET_DIR", root.join("guests/target"))
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building guests/lambda/rust-provided failed"
        );
        root.join("guests/target/debug/bootstrap")
    });
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(binary, tmp.path().join("bootstrap")).unwrap();
    zip_dir(tmp.path())
}

/// A CreateFunction body for a wasm zip.
pub fn create_body(name: &str, handler: &str, zip: &[u8]) -> Value {
    use base64::Engine as _;
    serde_json::json!({
        "FunctionName": name,
        "Runtime": "wasm",
        "Role": "arn:aws:iam::000000000000:role/test",
        "Handler": handler,
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
        "MemorySize": 64,
        "Timeout": 2,
    })
}

/// Polls `f` every 50 ms until it gives a value.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every log line of a function, page by page.
pub fn function_logs(server: &Server, name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let (status, v) = server.api_json(
            "GET",
            &format!("/wisp/v1/logs?function={name}&after={after}"),
            &Value::Null,
        );
        assert_eq!(status, 200, "{v}");
        let events = v["events"].as_array().unwrap();
        if events.is_empty() {
            return lines;
        }
        lines.extend(
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_string()),
        );
        after = v["next"].as_i64().unwrap();
    }
}
