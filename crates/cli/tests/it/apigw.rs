//! Lambda functions behind the gateway: requests become API Gateway proxy
//! events (payload format 2.0, or 1.0 per route) and results become HTTP
//! responses, deployed from a manifest with `wisp deploy`.

use serde_json::Value;

use crate::harness::{lambda_dir, Server};

const MANIFEST: &str = r#"
[app]
name = "web"

[function.api]
runtime = "nodejs20.x"
source = "api"
handler = "index.handler"
environment = { STAGE = "web" }
reserved_concurrency = 5
provisioned_concurrency = 1

[function.py]
runtime = "python3.11"
source = "py"
handler = "app.handler"
url = { auth = "NONE", cors = { allow_origins = ["*"] } }

[[route]]
method = "GET"
path = "/items/{id}"
function = "api"

[[route]]
method = "ANY"
path = "/v1/{proxy+}"
function = "api"
payload_format = "1.0"

[[route]]
method = "POST"
path = "/upload"
function = "api"

[[route]]
method = "GET"
path = "/py"
function = "py"
"#;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn deployed(tmp: &std::path::Path) -> Server {
    let app = tmp.join("app");
    copy_dir(&lambda_dir("node-kit"), &app.join("api"));
    copy_dir(&lambda_dir("python-kit"), &app.join("py"));
    std::fs::write(app.join("wisp.toml"), MANIFEST).unwrap();
    let server = Server::start(&tmp.join("data"));
    let out = server.cli(&["deploy", app.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

#[test]
fn payload_format_2_events_and_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let server = deployed(tmp.path());
    let r = server
        .http
        .get(format!("{}/items/42?a=1&a=2&b=x%20y", server.gateway))
        .header("cookie", "s=1; t=2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-kit"], "node");
    let cookies: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(r.headers().contains_key("x-wisp-request-id"));
    let v: Value = r.json().unwrap();
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/items/42");
    assert_eq!(v["query"], serde_json::json!({"a": "1,2", "b": "x y"}));
    assert_eq!(v["params"], serde_json::json!({"id": "42"}));

    // A result without statusCode is a 200 JSON response, as API Gateway infers.
    let r = server.get("/items/1?action=plain");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().unwrap(),
        serde_json::json!({"hello": "world"})
    );

    // A function error is a 502 without the function's details.
    let r = server.get("/items/1?action=throw&what=secret");
    assert_eq!(r.status(), 502);
    let body = r.text().unwrap();
    assert!(
        body.contains("Internal Server Error") && !body.contains("secret"),
        "{body}"
    );

    // Binary bodies arrive base64-encoded.
    let r = server
        .http
        .post(format!("{}/upload", server.gateway))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["isBase64Encoded"], true);
    assert_eq!(v["body"], "AJ+Slg==");

    let r = server.get("/py");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "python saw GET /py");
}

#[test]
fn manifest_concurrency_reaches_the_server_and_provisioned_workers_serve_warm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = deployed(tmp.path());
    let (_, v) = server.api_json("GET", "/2019-09-30/functions/api/concurrency", &Value::Null);
    assert_eq!(v["ReservedConcurrentExecutions"], 5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, v) = server.api_json(
            "GET",
            "/2019-09-30/functions/api/provisioned-concurrency?List=ALL",
            &Value::Null,
        );
        let c = &v["ProvisionedConcurrencyConfigs"][0];
        if c["Status"] == "READY" {
            assert!(
                c["FunctionArn"].as_str().unwrap().ends_with(":$LATEST"),
                "{c}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never READY: {v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = server.get("/items/7?action=plain");
    assert_eq!(r.status(), 200);
    let record = server.record(&crate::harness::request_id(&r));
    assert_eq!(record["cold"], false, "{record}");
}

/// `url = {...}` in the manifest deploys a function URL; taken out of
/// the manifest, the URL goes at the next deploy.
#[test]
fn a_manifest_url_is_deployed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let server = deployed(tmp.path());
    let (status, url) = server.api_json("GET", "/2021-10-31/functions/py/url", &Value::Null);
    assert_eq!(status, 200, "{url}");
    assert_eq!(url["AuthType"], "NONE");
    assert_eq!(url["Cors"]["AllowOrigins"], serde_json::json!(["*"]));
    let address = url["FunctionUrl"].as_str().unwrap();
    let host = address
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let r = server
        .http
        .get(format!("{}/anything?x=1", server.gateway))
        .header("host", &host)
        .header("origin", "https://a.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.text().unwrap(), "python saw GET /anything");

    let app = tmp.path().join("app");
    let manifest = MANIFEST.replace(
        "url = { auth = \"NONE\", cors = { allow_origins = [\"*\"] } }\n",
        "",
    );
    std::fs::write(app.join("wisp.toml"), manifest).unwrap();
    let out = server.cli(&["deploy", app.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = server.api_json("GET", "/2021-10-31/functions/py/url", &Value::Null);
    assert_eq!(status, 404);
    let r = server
        .http
        .get(format!("{}/anything", server.gateway))
        .header("host", &host)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn payload_format_1_events_per_route() {
    let tmp = tempfile::tempdir().unwrap();
    let server = deployed(tmp.path());
    let r = server
        .http
        .post(format!("{}/v1/x/y?k=1&k=2", server.gateway))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/x/y");
    assert_eq!(v["params"], serde_json::json!({"proxy": "x/y"}));
    assert_eq!(v["query"], serde_json::json!({"k": "2"}));
    assert_eq!(v["body"], "hello");
    assert_eq!(v["isBase64Encoded"], false);
}
