use std::path::{Path, PathBuf};

/// The store's file name in a home (and in a backup of one).
pub const DATABASE_FILE: &str = "kxca.db";

/// The files of a kxca home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at `root` (not created or checked here).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `kxca.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("kxca.toml")
    }
    /// `kxca.db`, the store.
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }
    /// `policies/`, the certificate profiles and intake policy.
    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }
    /// `keys/`, soft keys only.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// CA certificates (PEM), as published.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
    /// `crl/`, the latest CRLs and the published audit checkpoints.
    pub fn crl_dir(&self) -> PathBuf {
        self.root.join("crl")
    }
    /// Default place for PKCS#12 files the CLI writes.
    pub fn issued_dir(&self) -> PathBuf {
        self.root.join("issued")
    }
}
