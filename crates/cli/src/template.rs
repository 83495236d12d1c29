//! `wisp new`: project templates.

use std::path::Path;

use anyhow::{bail, Context};

/// Writes a new project into `dir` from the named template.
pub fn create(dir: &Path, name: &str, template: &str) -> anyhow::Result<()> {
    wisp_core::function::validate_name(name).map_err(|e| anyhow::anyhow!(e))?;
    if template != "rust-wasm" {
        bail!("unknown template `{template}`; available: rust-wasm");
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let crate_dir = dir.join("functions").join(name);
    std::fs::create_dir_all(crate_dir.join("src"))
        .with_context(|| format!("cannot create {}", crate_dir.display()))?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        &dir.join("wisp.toml"),
        format!(
            "[app]\nname = \"{name}\"\n\n[function.{name}]\nruntime = \"wasm\"\nsource = \"functions/{name}\"\nmemory_mb = 128\ntimeout = \"3s\"\n\n[[route]]\nmethod = \"GET\"\npath = \"/{name}\"\nfunction = \"{name}\"\n"
        ),
    )?;
    write(
        &crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwasip2 = \"1\"\n\n[profile.release]\nopt-level = \"s\"\nstrip = true\n\n[workspace]\n"
        ),
    )?;
    write(
        &crate_dir.join("src/lib.rs"),
        LIB_RS.replace("{name}", name),
    )?;
    write(
        &dir.join(".gitignore"),
        ".wisp/\nfunctions/*/target/\n".into(),
    )?;
    Ok(())
}

const LIB_RS: &str = r#"//! {name}: a wasi:http function. Every request is a fresh instance.

use std::io::Write as _;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Handler;

wasip2::http::proxy::export!(Handler);

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        println!("{name} handling {path}");
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().unwrap();
        out.write_all(b"Hello from {name}!\n").unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}
"#;
