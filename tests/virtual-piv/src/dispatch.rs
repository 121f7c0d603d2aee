//! One trussed dispatcher serving the two backends piv-authenticator needs:
//! trussed-auth (PIN and PUK) and trussed-staging (chunked, wrap-key-to-file,
//! HPKE), plus trussed-rsa-alloc for RSA keys. Upstream only ships each on
//! its own, hence this file.

use trussed::backend::{Backend as _, BackendId};
use trussed::platform::Platform;
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl as _};
use trussed::service::ServiceResources;
use trussed::types::Context;
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::api::{reply, request, Reply, Request};
use trussed_core::types::Location;
use trussed_core::Error;
use trussed_hpke::HpkeExtension;
use trussed_rsa_alloc::SoftwareRsa;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

pub const BACKENDS: &[BackendId<Backend>] = &[
    BackendId::Custom(Backend::Auth),
    BackendId::Custom(Backend::Rsa),
    BackendId::Custom(Backend::Staging),
    BackendId::Core,
];

pub enum Backend {
    Auth,
    Rsa,
    Staging,
}

pub enum Extension {
    Auth,
    Chunked,
    WrapKeyToFile,
    Hpke,
}

impl From<Extension> for u8 {
    fn from(extension: Extension) -> Self {
        match extension {
            Extension::Auth => 0,
            Extension::Chunked => 1,
            Extension::WrapKeyToFile => 2,
            Extension::Hpke => 3,
        }
    }
}

impl TryFrom<u8> for Extension {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        Ok(match id {
            0 => Extension::Auth,
            1 => Extension::Chunked,
            2 => Extension::WrapKeyToFile,
            3 => Extension::Hpke,
            _ => return Err(Error::InternalError),
        })
    }
}

pub struct Dispatch {
    auth: AuthBackend,
    rsa: SoftwareRsa,
    staging: StagingBackend,
}

#[derive(Default)]
pub struct DispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

impl Dispatch {
    pub fn new() -> Self {
        Dispatch {
            auth: AuthBackend::new(Location::Internal, FilesystemLayout::V0),
            rsa: SoftwareRsa,
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for Dispatch {
    type BackendId = Backend;
    type Context = DispatchContext;
    type ExtensionId = Extension;

    fn core_request<P: Platform>(
        &mut self,
        backend: &Backend,
        ctx: &mut Context<DispatchContext>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        match backend {
            Backend::Auth => {
                self.auth
                    .request(&mut ctx.core, &mut ctx.backends.auth, request, resources)
            }
            Backend::Rsa => self.rsa.request(&mut ctx.core, &mut (), request, resources),
            Backend::Staging => {
                self.staging
                    .request(&mut ctx.core, &mut ctx.backends.staging, request, resources)
            }
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &Backend,
        extension: &Extension,
        ctx: &mut Context<DispatchContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core = &mut ctx.core;
        match (backend, extension) {
            (Backend::Auth, Extension::Auth) => self.auth.extension_request_serialized(
                core,
                &mut ctx.backends.auth,
                request,
                resources,
            ),
            (Backend::Staging, Extension::Chunked) => {
                trussed::serde_extensions::ExtensionImpl::<ChunkedExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            (Backend::Staging, Extension::WrapKeyToFile) => {
                trussed::serde_extensions::ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            (Backend::Staging, Extension::Hpke) => {
                trussed::serde_extensions::ExtensionImpl::<HpkeExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

impl ExtensionId<AuthExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Auth;
}
impl ExtensionId<ChunkedExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Chunked;
}
impl ExtensionId<WrapKeyToFileExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::WrapKeyToFile;
}
impl ExtensionId<HpkeExtension> for Dispatch {
    type Id = Extension;
    const ID: Extension = Extension::Hpke;
}
