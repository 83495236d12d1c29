//! Root credentials: from `WISP_ACCESS_KEY_ID`/`WISP_SECRET_ACCESS_KEY`, or
//! `DATA_DIR/credentials` (AWS INI format, profile `wisp`), generated on
//! first start with mode 0600.

use std::path::Path;

use anyhow::Context;
use rand::Rng;
use wisp_aws::Credentials;

fn from_env() -> Option<Credentials> {
    let id = std::env::var("WISP_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty())?;
    let secret = std::env::var("WISP_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(Credentials {
        access_key_id: id,
        secret_access_key: secret,
    })
}

/// Reads the `[wisp]` profile of a credentials file.
pub fn read_credentials_file(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line == "[wisp]";
        } else if in_profile {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "aws_access_key_id" => id = Some(v.trim().to_string()),
                    "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Credentials {
            access_key_id,
            secret_access_key,
        })),
        _ => anyhow::bail!(
            "{} has no [wisp] profile with aws_access_key_id and aws_secret_access_key",
            path.display()
        ),
    }
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The server's credentials: env first, then the file, else a new pair.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Credentials> {
    if let Some(c) = from_env() {
        return Ok(c);
    }
    let path = data_dir.join("credentials");
    if let Some(c) = read_credentials_file(&path)? {
        return Ok(c);
    }
    let credentials = Credentials {
        access_key_id: format!(
            "AKWISP{}",
            random_string(14, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        ),
        secret_access_key: random_string(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
    };
    write_credentials(&path, &credentials)?;
    Ok(credentials)
}

/// The cluster's credentials: every node of a shared store answers to the
/// same keys, the first node's (or the environment's, when set: each node
/// is then configured alike). They are written to this node's data dir, so
/// the CLI on this machine finds them.
pub async fn share(
    data_dir: &Path,
    local: Credentials,
    store: &wisp_store_nats::NatsStore,
) -> anyhow::Result<Credentials> {
    if from_env().is_some() {
        return Ok(local);
    }
    let proposed = format!("{}:{}", local.access_key_id, local.secret_access_key);
    let shared = store
        .adopt_shared("credentials", &proposed)
        .await
        .map_err(|e| anyhow::anyhow!("cannot share the credentials: {e}"))?;
    if shared == proposed {
        return Ok(local);
    }
    let (id, secret) = shared
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("the cluster's stored credentials are malformed"))?;
    let credentials = Credentials {
        access_key_id: id.into(),
        secret_access_key: secret.into(),
    };
    // Replaces this node's own pair, which nothing else uses.
    let path = data_dir.join("credentials");
    let _ = std::fs::remove_file(&path);
    write_credentials(&path, &credentials)?;
    Ok(credentials)
}

fn write_credentials(path: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    let text = format!(
        "[wisp]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        credentials.access_key_id, credentials.secret_access_key
    );
    write_private(path, &text)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
