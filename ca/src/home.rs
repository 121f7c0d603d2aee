use std::path::{Path, PathBuf};

/// The store's file name in a home (and in a backup of one).
pub const DATABASE_FILE: &str = "kxca.db";

/// The files of a kxca home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("kxca.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }
    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// CA certificates (PEM), as published.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
    pub fn crl_dir(&self) -> PathBuf {
        self.root.join("crl")
    }
    /// Default place for PKCS#12 files the CLI writes.
    pub fn issued_dir(&self) -> PathBuf {
        self.root.join("issued")
    }
}
