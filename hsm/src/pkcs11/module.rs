//! Loading a PKCS#11 module once per process, and re-initialising it when
//! it has been finalised or lost its device.
//!
//! C_Initialize is process-wide: a second initialisation fails, and a
//! C_Finalize (ours, another library's, or a crashed network HSM client's)
//! pulls the library from under every session. So each module is loaded
//! once and shared; a generation number tells sessions opened before a
//! re-initialisation that they are gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::Error;

use super::fault::describe;

pub(crate) struct Module {
    path: PathBuf,
    state: RwLock<Loaded>,
    /// Held from C_SignInit to the signature for keys that demand a
    /// context-specific login: a PIV card has one PIN state for all
    /// sessions, so another session's login in between would be spent by
    /// this signature and leave that one with CKR_USER_NOT_LOGGED_IN.
    context_login: Mutex<()>,
}

pub(crate) struct Loaded {
    pub ctx: Pkcs11,
    /// Bumped by every re-initialisation; sessions remember theirs.
    pub generation: u64,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

fn initialize(ctx: &Pkcs11) -> Result<(), CkError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another user of the module in this process initialised it first.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        other => other,
    }
}

impl Module {
    /// A turn at a sign-with-context-login, one session at a time.
    pub fn context_login_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.context_login.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The module at `path`, loaded and initialised on first use.
    pub fn load(path: &Path) -> Result<Arc<Module>, Error> {
        let mut modules = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(path) {
            return Ok(m.clone());
        }
        let fail = |e: CkError| Error::Pkcs11 {
            key: format!("module {}", path.display()),
            reason: describe(&e),
        };
        if !path.exists() {
            return Err(Error::Pkcs11 {
                key: format!("module {}", path.display()),
                reason: "no such file (install the module or set [pkcs11] module_path)".into(),
            });
        }
        let ctx = Pkcs11::new(path).map_err(fail)?;
        initialize(&ctx).map_err(fail)?;
        let module = Arc::new(Module {
            path: path.to_path_buf(),
            state: RwLock::new(Loaded { ctx, generation: 0 }),
            context_login: Mutex::new(()),
        });
        modules.insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds off re-initialisation while PKCS#11 calls are in flight.
    pub fn read(&self) -> RwLockReadGuard<'_, Loaded> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Finalizes and re-initialises the library, unless someone already did
    /// since `seen_generation`. Every session opened before is then void.
    pub fn reinitialize(&self, seen_generation: u64) -> Result<(), Error> {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if st.generation != seen_generation {
            return Ok(());
        }
        tracing::warn!(module = %self.path.display(), "re-initialising the PKCS#11 library");
        // Fails with CKR_CRYPTOKI_NOT_INITIALIZED when someone finalised it
        // behind our back: that is the case being cured.
        let _ = st.ctx.clone().finalize();
        initialize(&st.ctx).map_err(|e| Error::Pkcs11 {
            key: format!("module {}", self.path.display()),
            reason: format!("re-initialisation failed: {}", describe(&e)),
        })?;
        st.generation += 1;
        Ok(())
    }
}
