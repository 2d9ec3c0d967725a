//! A throw-away certificate authority and server certificate, generated at
//! test time with the `openssl` CLI (ECDSA P-256, valid 30 days).
//!
//! The server certificate's subjectAltName always covers `IP:127.0.0.1` and
//! `DNS:localhost`, plus any extra names the caller passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Result;
use crate::tools::{find_binary, mkdir, run, write_file};

/// Paths of a generated CA and server certificate.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Generates `ca.crt`/`ca.key` and `server.crt`/`server.key` in `dir`
    /// (created if missing), plus `certs-dir/ca.crt` (a directory in the
    /// layout skopeo's `--cert-dir` expects). `extra_sans` are openssl SAN
    /// entries such as `"IP:127.5.0.2"` or `"DNS:mirror.test"`.
    pub fn generate(dir: &Path, extra_sans: &[&str]) -> Result<Self> {
        let openssl = find_binary("openssl")?;
        mkdir(dir)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(
            Command::new(&openssl)
                .current_dir(dir)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "30"])
                .args(["-subj", "/CN=mirrorplan-harness-ca"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
            None,
        )?;
        run(
            Command::new(&openssl)
                .current_dir(dir)
                .args(["req", "-new"])
                .args(ec)
                .args(["-keyout", "server.key", "-out", "server.csr"])
                .args(["-subj", "/CN=localhost"]),
            None,
        )?;
        let mut sans = vec!["IP:127.0.0.1", "DNS:localhost"];
        sans.extend_from_slice(extra_sans);
        write_file(
            &dir.join("server.ext"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )?;
        run(
            Command::new(&openssl)
                .current_dir(dir)
                .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt"])
                .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt"])
                .args(["-days", "30", "-extfile", "server.ext"]),
            None,
        )?;
        run(
            Command::new(&openssl).current_dir(dir).args([
                "verify",
                "-CAfile",
                "ca.crt",
                "server.crt",
            ]),
            None,
        )?;
        let certs_dir = dir.join("certs-dir");
        mkdir(&certs_dir)?;
        std::fs::copy(dir.join("ca.crt"), certs_dir.join("ca.crt")).map_err(
            crate::error::io_err(format!("copying ca.crt into {}", certs_dir.display())),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA private key (PEM). Only for tests that sign more certificates.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The server certificate (PEM), signed by the CA.
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server private key (PEM).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A directory holding only `ca.crt`, for skopeo's `--cert-dir` /
    /// `--dest-cert-dir`.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs-dir")
    }
}
