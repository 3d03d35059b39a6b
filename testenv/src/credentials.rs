//! What clients and components authenticate with: the admin's static token, the
//! service-account signing key and the serving certificate (openssl), the kubeconfig.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{io_error, Error};

/// The service-account signing key and a self-signed serving certificate, made with openssl
/// (output in pki/openssl.log). False when openssl failed.
pub(crate) fn generate_keys(pki: &Path) -> Result<bool, Error> {
    let log_path = pki.join("openssl.log");
    let log_file = File::create(&log_path).map_err(io_error("create pki/openssl.log"))?;
    let openssl = |args: &[&str]| -> Result<bool, Error> {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(pki)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io_error("openssl log"))?)
            .stderr(log_file.try_clone().map_err(io_error("openssl log"))?)
            .status()
            .map_err(io_error("run openssl"))?;
        Ok(status.success())
    };
    Ok(openssl(&["genrsa", "-out", "sa.key", "2048"])?
        && openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=zoom-local-apiserver",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,IP:10.0.0.1",
            "-keyout",
            "serving.key",
            "-out",
            "serving.crt",
        ])?)
}

/// The kubeconfig for `server`, authenticating with `token`.
pub(crate) fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: zoom-local
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: zoom-admin
  user:
    token: {token}
contexts:
- name: zoom-local
  context:
    cluster: zoom-local
    user: zoom-admin
    namespace: default
current-context: zoom-local
"
    )
}

/// Writes a file only its owner can read (tokens, the kubeconfig).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(io_error(format!("write {}", path.display())))
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_error("read /dev/urandom"))?;
    Ok(bytes)
}

/// 16 random bytes in hex: the admin's static token.
pub(crate) fn token() -> Result<String, Error> {
    let bytes: [u8; 16] = random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_and_the_token() {
        let config = kubeconfig("https://127.0.0.1:12345", "abc123");
        assert!(config.contains("    server: https://127.0.0.1:12345\n"));
        assert!(config.contains("    token: abc123\n"));
        assert!(config.contains("insecure-skip-tls-verify: true"));
    }

    #[test]
    fn a_token_is_32_hex_digits() {
        let token = token().expect("token");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
