//! Reading code zips from untrusted uploads: bounded in size and entries,
//! no path traversal, and the one entry a runtime needs pulled out.

use std::io::{Cursor, Read};

use sha2::{Digest, Sha256};

use crate::limits;

/// What was found wrong with a zip; always the caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ZipError(pub String);

/// The checked contents list of a code zip.
#[derive(Debug, Clone)]
pub struct ZipSummary {
    pub entries: Vec<String>,
    pub unpacked_bytes: u64,
}

/// Checks a zip: size, entry count, unpacked size, and that no entry
/// escapes its root (`../`, absolute paths, drive letters).
pub fn inspect(bytes: &[u8]) -> Result<ZipSummary, ZipError> {
    if bytes.len() > limits::MAX_ZIP_BYTES {
        return Err(ZipError(format!(
            "the zip is {} bytes; the limit is {}",
            bytes.len(),
            limits::MAX_ZIP_BYTES
        )));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ZipError(format!("could not unzip the code: {e}")))?;
    if archive.len() > limits::MAX_ZIP_ENTRIES {
        return Err(ZipError(format!(
            "the zip has {} entries; the limit is {}",
            archive.len(),
            limits::MAX_ZIP_ENTRIES
        )));
    }
    let mut entries = Vec::with_capacity(archive.len());
    let mut unpacked: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| ZipError(format!("could not read zip entry {i}: {e}")))?;
        let name = entry.name().to_string();
        if entry.enclosed_name().is_none() || name.contains('\\') || name.contains(':') {
            return Err(ZipError(format!(
                "zip entry `{name}` points outside the package; entries must be relative paths without `..`"
            )));
        }
        unpacked = unpacked.saturating_add(entry.size());
        if unpacked > limits::MAX_UNZIPPED_BYTES {
            return Err(ZipError(format!(
                "the unpacked code is larger than {} bytes",
                limits::MAX_UNZIPPED_BYTES
            )));
        }
        entries.push(name);
    }
    Ok(ZipSummary {
        entries,
        unpacked_bytes: unpacked,
    })
}

/// Reads one entry of an already inspected zip, bounded by the unpacked limit.
pub fn read_entry(bytes: &[u8], name: &str) -> Result<Vec<u8>, ZipError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ZipError(format!("could not unzip the code: {e}")))?;
    let entry = archive
        .by_name(name)
        .map_err(|_| ZipError(format!("the zip has no file `{name}`")))?;
    let mut out = Vec::with_capacity(entry.size().min(limits::MAX_UNZIPPED_BYTES) as usize);
    entry
        .take(limits::MAX_UNZIPPED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| ZipError(format!("could not read `{name}` from the zip: {e}")))?;
    if out.len() as u64 > limits::MAX_UNZIPPED_BYTES {
        return Err(ZipError(format!("`{name}` is too large once unpacked")));
    }
    Ok(out)
}

/// Builds a zip holding one file, the way `wisp deploy` packages a component.
pub fn single_file(name: &str, contents: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        writer
            .start_file(name, options)
            .expect("writing to memory cannot fail");
        writer
            .write_all(contents)
            .expect("writing to memory cannot fail");
        writer.finish().expect("writing to memory cannot fail");
    }
    out.into_inner()
}

/// Checks that a process runtime's zip holds what its handler names, so a
/// typo is refused at deploy instead of failing every invocation:
/// `provided*` needs `bootstrap`; Node `dir/file.fn` needs `dir/file.js`,
/// `.mjs` or `.cjs`; Python `pkg.mod.fn` (or `pkg/mod.fn`) needs
/// `pkg/mod.py` or `pkg/mod/__init__.py`.
pub fn check_handler(entries: &[String], runtime: &str, handler: &str) -> Result<(), ZipError> {
    let has = |name: &str| entries.iter().any(|e| e == name);
    let listing = || {
        let mut names: Vec<&str> = entries.iter().map(String::as_str).take(10).collect();
        if entries.len() > 10 {
            names.push("...");
        }
        names.join(", ")
    };
    if runtime.starts_with("provided") {
        return if has("bootstrap") {
            Ok(())
        } else {
            Err(ZipError(format!(
                "runtime `{runtime}` runs the executable `bootstrap` at the root of the zip, and the zip has none (it has: {})",
                listing()
            )))
        };
    }
    let (module, function) = handler.rsplit_once('.').ok_or_else(|| {
        ZipError(format!(
            "handler `{handler}` must be `file.function`, like `index.handler`"
        ))
    })?;
    if module.is_empty() || function.is_empty() {
        return Err(ZipError(format!(
            "handler `{handler}` must be `file.function`, like `index.handler`"
        )));
    }
    let candidates: Vec<String> = if runtime.starts_with("nodejs") {
        // `lib/app.handler` or, for nested exports, `app.api.handler`:
        // the file ends at the first dot after the last slash.
        let (dir, base) = match handler.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b),
            None => (String::new(), handler),
        };
        let file = format!("{dir}{}", base.split('.').next().unwrap_or(base));
        ["js", "mjs", "cjs"]
            .iter()
            .map(|ext| format!("{file}.{ext}"))
            .collect()
    } else {
        let path = module.replace('.', "/");
        vec![format!("{path}.py"), format!("{path}/__init__.py")]
    };
    if candidates.iter().any(|c| has(c)) {
        Ok(())
    } else {
        Err(ZipError(format!(
            "handler `{handler}` needs {} in the zip, and it has none (it has: {})",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            listing()
        )))
    }
}

#[cfg(test)]
mod handler_tests {
    use super::check_handler;

    fn entries(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn handlers_name_files_in_the_zip() {
        let e = entries(&[
            "index.js",
            "src/app.mjs",
            "app.py",
            "pkg/mod/__init__.py",
            "bootstrap",
        ]);
        assert!(check_handler(&e, "nodejs20.x", "index.handler").is_ok());
        assert!(check_handler(&e, "nodejs20.x", "index.a.b").is_ok());
        assert!(check_handler(&e, "nodejs20.x", "src/app.handler").is_ok());
        assert!(check_handler(&e, "python3.12", "app.lambda_handler").is_ok());
        assert!(check_handler(&e, "python3.12", "pkg.mod.fn").is_ok());
        assert!(check_handler(&e, "provided.al2023", "anything").is_ok());
        let err = check_handler(&e, "nodejs20.x", "main.handler").unwrap_err();
        assert!(err.0.contains("`main.js`"), "{err}");
        assert!(check_handler(&e, "python3.12", "handler").is_err());
        assert!(check_handler(&entries(&["x"]), "provided", "h").is_err());
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What kind of WebAssembly binary `bytes` is, from its header.
#[derive(Debug, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => WasmKind::CoreModule,
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

/// Checks that `bytes` (the file `name`) is a component, with a message
/// that says what to do otherwise.
pub fn require_component(bytes: &[u8], name: &str) -> Result<(), ZipError> {
    match wasm_kind(bytes) {
        WasmKind::Component => Ok(()),
        WasmKind::CoreModule => Err(ZipError(format!(
            "`{name}` is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or run `wasm-tools component new`)"
        ))),
        WasmKind::NotWasm => Err(ZipError(format!(
            "`{name}` is not a WebAssembly component"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(names: &[&str]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        for n in names {
            w.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(b"x").unwrap();
        }
        w.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        assert!(inspect(&zip_with(&["ok.wasm", "dir/a.txt"])).is_ok());
        for bad in [
            "../evil",
            "a/../../evil",
            "/etc/passwd",
            "C:\\x",
            "a\\..\\b",
        ] {
            let err = inspect(&zip_with(&[bad])).unwrap_err();
            assert!(err.0.contains("outside"), "{bad}: {err}");
        }
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert!(inspect(b"not a zip")
            .unwrap_err()
            .0
            .contains("could not unzip"));
    }

    #[test]
    fn single_file_round_trips() {
        let z = single_file("a.wasm", b"hello");
        assert_eq!(inspect(&z).unwrap().entries, ["a.wasm"]);
        assert_eq!(read_entry(&z, "a.wasm").unwrap(), b"hello");
        assert!(read_entry(&z, "b.wasm").is_err());
    }

    #[test]
    fn wasm_headers_are_told_apart() {
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component);
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
        assert_eq!(wasm_kind(b"#!/bin/sh"), WasmKind::NotWasm);
    }

    proptest::proptest! {
        #[test]
        fn inspect_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = inspect(&bytes);
        }
    }
}
