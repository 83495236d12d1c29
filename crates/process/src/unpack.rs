//! Unpacks a function's code zip into its task root, once per code sha.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use wisp_core::codezip;

/// Unpacks `zip` into `root/<sha>` unless that exists; returns the dir.
/// Unpacks into a temporary sibling first and renames it, so a crash never
/// leaves a half-written task root behind.
pub(crate) fn task_root(root: &Path, sha: &str, zip: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(sha);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(root)?;
    let bytes = std::fs::read(zip)?;
    codezip::inspect(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.0))?;
    let tmp = root.join(format!(".{sha}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    if let Err(e) = extract(&bytes, &tmp).and_then(|()| open_dirs(&tmp)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another prepare of the same code won the race: use its copy.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// Makes every directory of a task root enterable and readable by all,
/// whatever the server's umask: workers may run as other users.
fn open_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            open_dirs(&entry.path())?;
        }
    }
    Ok(())
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Whether a symlink at `link` (relative to the root) pointing at `target`
/// stays inside the root.
fn link_stays_inside(link: &Path, target: &str) -> bool {
    let target = Path::new(target);
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn extract(bytes: &[u8], into: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(format!("could not unzip the code: {e}")))?;
    let mut budget = wisp_core::limits::MAX_UNZIPPED_BYTES;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| invalid(format!("could not read zip entry {i}: {e}")))?;
        let relative = entry
            .enclosed_name()
            .ok_or_else(|| invalid(format!("zip entry `{}` escapes the package", entry.name())))?;
        let path = into.join(&relative);
        let mode = entry.unix_mode();
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            let mut target = String::new();
            (&mut entry).take(4096).read_to_string(&mut target)?;
            if !link_stays_inside(&relative, &target) {
                return Err(invalid(format!(
                    "zip entry `{}` is a symlink to `{target}`, outside the package",
                    relative.display()
                )));
            }
            std::os::unix::fs::symlink(&target, &path)?;
            continue;
        }
        let mut file = std::fs::File::create(&path)?;
        let copied = std::io::copy(&mut (&mut entry).take(budget + 1), &mut file)?;
        if copied > budget {
            return Err(invalid("the unpacked code is too large".into()));
        }
        budget -= copied;
        // Keep the owner's execute bit (a `bootstrap`, a native binary);
        // everything is readable, nothing else is writable.
        let exec = mode.is_some_and(|m| m & 0o100 != 0);
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(link_stays_inside(
            Path::new("node_modules/.bin/x"),
            "../x/cli.js"
        ));
        assert!(!link_stays_inside(Path::new("a"), "../etc/passwd"));
        assert!(!link_stays_inside(Path::new("a/b"), "../../x"));
        assert!(!link_stays_inside(Path::new("a"), "/etc/passwd"));
    }

    #[test]
    fn unpacks_once_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("code.zip");
        let mut out = std::io::Cursor::new(Vec::new());
        {
            use std::io::Write;
            let mut w = zip::ZipWriter::new(&mut out);
            let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
            w.start_file("bootstrap", exec).unwrap();
            w.write_all(b"#!/bin/sh\n").unwrap();
            let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o600);
            w.start_file("lib/data.txt", plain).unwrap();
            w.write_all(b"x").unwrap();
            w.finish().unwrap();
        }
        std::fs::write(&zip, out.into_inner()).unwrap();
        let root = task_root(&tmp.path().join("tasks"), "abc", &zip).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("bootstrap"), 0o755);
        assert_eq!(mode("lib/data.txt"), 0o644);
        std::fs::remove_file(&zip).unwrap();
        assert_eq!(
            task_root(&tmp.path().join("tasks"), "abc", &zip).unwrap(),
            root
        );
    }
}
