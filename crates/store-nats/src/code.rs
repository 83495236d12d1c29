//! Code blobs in the Object Store, named by their sha256. Each node keeps
//! the blobs it has fetched as files in its own cache directory, so a blob
//! crosses the network once per node (and is compiled once per node by the
//! runtimes, which key their caches on the sha256 as before).

use std::io::Write;
use std::path::PathBuf;

use async_nats::jetstream::object_store::{GetErrorKind, InfoErrorKind};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use wisp_store::{CodeStore, Result, StoreError};

use crate::{internal, NatsStore};

fn valid_sha(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `bytes` under `path` through a temporary file and a rename, so a
/// crash never leaves a torn blob under its final name.
fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

async fn cache(path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    tokio::task::spawn_blocking(move || write_atomically(path, bytes))
        .await
        .map_err(internal)?
}

#[async_trait::async_trait]
impl CodeStore for NatsStore {
    async fn put_code(&self, bytes: Vec<u8>) -> Result<String> {
        let sha = hex::encode(Sha256::digest(&bytes));
        let stored = match self.code.info(&sha).await {
            Ok(info) => !info.deleted && info.size == bytes.len(),
            Err(e) if e.kind() == InfoErrorKind::NotFound => false,
            Err(e) => return Err(internal(e)),
        };
        if !stored {
            self.code
                .put(sha.as_str(), &mut bytes.as_slice())
                .await
                .map_err(internal)?;
        }
        let path = self.code_cache.join(&sha);
        if !tokio::fs::try_exists(&path).await? {
            cache(path, bytes).await?;
        }
        Ok(sha)
    }

    async fn code_path(&self, sha256: &str) -> Result<PathBuf> {
        if !valid_sha(sha256) {
            return Err(StoreError::NotFound(format!("code {sha256}")));
        }
        let path = self.code_cache.join(sha256);
        if tokio::fs::try_exists(&path).await? {
            return Ok(path);
        }
        let mut object = match self.code.get(sha256).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => {
                return Err(StoreError::NotFound(format!("code {sha256}")))
            }
            Err(e) => return Err(internal(e)),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await?;
        // The object store checks its own digest; this one checks that the
        // blob is the one its name promises.
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(internal(format!(
                "code {sha256} in the object store does not match its sha256"
            )));
        }
        cache(path.clone(), bytes).await?;
        Ok(path)
    }
}
